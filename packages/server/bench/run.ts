// @coffer/server benchmarks. `npm run bench --workspace @coffer/server` (a table) or with
// `-- --json` (one JSON object per line on stdout, progress on stderr). Options as in
// @coffer/bench-kit: --json, --filter <text>, --rounds <n>, --scale <x>, --verbose, --quick.
//
// login/server-only is the goal row: the server's side of an OPAQUE login (login/start and
// login/finish through the whole app against SQLite, session created), with the client's work
// excluded — each login's client steps run between the two timed calls and are not counted —
// against a conventional server that verifies one Argon2id hash per login (m = 64 MiB, t = 3,
// p = 1). The other rows are informational: client-side wall time of signup and login (with the
// client's real Argon2id stretching), and how close an unknown user's login/start is to a known
// one's (ratio ≈ 1 is the goal of indistinguishability; it is not a timing-safety proof).
import { parseArgs } from 'node:util';
import {
  type Case,
  cycle,
  type Goal,
  loadPeer,
  log,
  meets,
  type Result,
  runCase,
} from '@coffer/bench-kit';
import { argon2id, utf8Encode } from '@coffer/crypto';
import * as opaque from '@serenity-kit/opaque';
import {
  type BenchServer,
  CHEAP_KSF,
  CLIENT_KSF,
  login,
  NO_THROTTLE,
  post,
  signup,
  startBenchServer,
} from './_setup.js';

const { values } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    filter: { type: 'string', multiple: true },
    rounds: { type: 'string', default: '9' },
    quick: { type: 'boolean', default: false },
    scale: { type: 'string', default: '1' },
    verbose: { type: 'boolean', default: false },
  },
  strict: true,
});
const rounds = Number(values.rounds);
const timeScale = Number(values.scale) * (values.quick ? 0.1 : 1);
if (!Number.isInteger(rounds) || rounds < 1) throw new Error('--rounds expects a positive integer');
if (!(timeScale > 0)) throw new Error('--scale expects a positive number');
const selected = (name: string) =>
  !values.filter || values.filter.length === 0 || values.filter.some((f) => name.includes(f));

// The conventional baseline: one Argon2id verification per login (OWASP's second option with
// RFC 9106's 64 MiB), as a Node server does it with the native `argon2` package (node-argon2,
// the reference C implementation; a bench-only peer in bench/package.json). Where it cannot be
// loaded, @coffer/crypto's argon2id (hash-wasm, WebAssembly) stands in and the label says so.
const ARGON2_BASELINE = { memoryKiB: 65536, iterations: 3, parallelism: 1, length: 32 } as const;
const argonPassword = 'correct horse battery staple';

interface NativeArgon2 {
  argon2id: number;
  hash(
    password: string,
    options: { type: number; memoryCost: number; timeCost: number; parallelism: number },
  ): Promise<string>;
  verify(hash: string, password: string): Promise<boolean>;
}

async function argonBaseline(): Promise<{ label: string; verify: () => Promise<boolean> }> {
  const native = await loadPeer<NativeArgon2>('argon2', 'argon2 baseline', import.meta.url);
  if (native) {
    const hash = await native.hash(argonPassword, {
      type: native.argon2id,
      memoryCost: ARGON2_BASELINE.memoryKiB,
      timeCost: ARGON2_BASELINE.iterations,
      parallelism: ARGON2_BASELINE.parallelism,
    });
    return {
      label: 'argon2id verify (m=64MiB, t=3, p=1) per login, native argon2 (node-argon2)',
      verify: () => native.verify(hash, argonPassword),
    };
  }
  const salt = new Uint8Array(16).fill(7);
  const expected = await argon2id(utf8Encode(argonPassword), salt, ARGON2_BASELINE);
  return {
    label: 'argon2id verify (m=64MiB, t=3, p=1) per login, @coffer/crypto (hash-wasm)',
    verify: async () =>
      Buffer.compare(
        Buffer.from(await argon2id(utf8Encode(argonPassword), salt, ARGON2_BASELINE)),
        Buffer.from(expected),
      ) === 0,
  };
}
const argon = await argonBaseline();
const ARGON2_LABEL = argon.label;
const argonVerify = argon.verify;

const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6;
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const round4 = (x: number) => (Number.isFinite(x) && x !== 0 ? Number(x.toPrecision(4)) : x);

/** Runs `op` for `ms` of wall time (at least `minOps`); ops per second. */
async function timedWall(op: () => Promise<unknown>, ms: number, minOps: number) {
  let ops = 0;
  const start = nowMs();
  while (nowMs() - start < ms || ops < minOps) {
    await op();
    ops++;
  }
  return (ops * 1000) / (nowMs() - start);
}

/**
 * login/server-only: each login's client steps run untimed; only the two server calls are summed.
 * A round lasts until `ms` of server time has been spent.
 */
async function serverOnlyLogins(server: BenchServer): Promise<{ result: Result; goal: Goal }> {
  const name = 'login/server-only/opaque+sqlite';
  const users = Array.from({ length: 16 }, (_, i) => ({
    username: `bench-user-${i}`,
    password: `pw-${i}`,
  }));
  for (const u of users) await signup(server.app, u.username, u.password, CHEAP_KSF);
  const next = cycle(users);

  /** One login; returns the milliseconds spent inside the server. */
  const oneLogin = async (): Promise<number> => {
    const u = next();
    const c = opaque.client.startLogin({ password: u.password });
    const t0 = nowMs();
    const s = await post(server.app, '/v1/login/start', {
      username: u.username,
      startLoginRequest: c.startLoginRequest,
    });
    const t1 = nowMs();
    const done = opaque.client.finishLogin({
      clientLoginState: c.clientLoginState,
      loginResponse: s.json.loginResponse,
      password: u.password,
      keyStretching: CHEAP_KSF,
    });
    const body = { loginId: s.json.loginId, finishLoginRequest: done!.finishLoginRequest };
    const t2 = nowMs();
    const f = await post(server.app, '/v1/login/finish', body);
    const t3 = nowMs();
    if (f.status !== 200) throw new Error(`bench check failed: login answered ${f.status}`);
    return t1 - t0 + (t3 - t2);
  };
  const serverRound = async (ms: number, minOps: number) => {
    let ops = 0;
    let spent = 0;
    while (spent < ms || ops < minOps) {
      spent += await oneLogin();
      ops++;
    }
    return (ops * 1000) / spent;
  };

  // Check before timing: a login makes a working session; the baseline computes the hash.
  const token = await login(server.app, users[0]!.username, users[0]!.password, CHEAP_KSF);
  const me = await server.app.request('/v1/session', {
    headers: { authorization: `Bearer ${token}` },
  });
  if (me.status !== 200) throw new Error('bench check failed: the session does not work');
  if (!(await argonVerify())) throw new Error('bench check failed: argon2id did not verify');

  const ms = 1000 * timeScale;
  await serverRound(ms / 2, 1);
  await timedWall(argonVerify, ms / 2, 1);
  const ours: number[] = [];
  const base: number[] = [];
  for (let r = 0; r < rounds; r++) {
    if (r % 2 === 0) {
      base.push(await timedWall(argonVerify, ms, 2));
      ours.push(await serverRound(ms, 2));
    } else {
      ours.push(await serverRound(ms, 2));
      base.push(await timedWall(argonVerify, ms, 2));
    }
  }
  if (values.verbose)
    log(`  ours:     ${ours.map(round4).join(' ')}\n  baseline: ${base.map(round4).join(' ')}`);
  const value = round4(median(ours));
  const baselineValue = round4(median(base));
  return {
    result: {
      case: name,
      unit: 'logins/s',
      value,
      baseline: ARGON2_LABEL,
      baselineValue,
      ratio: Number((value / baselineValue).toFixed(3)),
    },
    goal: 100,
  };
}

/** Informational rows timed by bench-kit (whole ops). */
function infoCases(server: BenchServer, unthrottled: BenchServer): Case[] {
  let n = 0;
  const baseline = { label: ARGON2_LABEL, op: argonVerify };
  const check = async () => {
    if (!(await argonVerify())) throw new Error('bench check failed: argon2id did not verify');
  };
  const known = { username: 'wall-known', password: 'wall-password' };
  const startBody = (username: string) => ({
    username,
    startLoginRequest: opaque.client.startLogin({ password: 'x' }).startLoginRequest,
  });
  // Requests made ahead, so that the rows time the server only.
  const knownStarts = Array.from({ length: 64 }, () => startBody(known.username));
  const unknownStarts = Array.from({ length: 64 }, (_, i) => startBody(`no-such-user-${i}`));
  const nextKnown = cycle(knownStarts);
  const nextUnknown = cycle(unknownStarts);
  // Thousands of starts for a few names would be throttled (each counts until login/finish), so
  // this row runs on a second app over its own database without the throttle.
  const start = async (body: unknown) => {
    const r = await post(unthrottled.app, '/v1/login/start', body);
    if (r.status !== 200) throw new Error(`bench check failed: login/start answered ${r.status}`);
  };
  return [
    {
      name: 'signup/client-wall',
      unit: 'signups/s',
      ours: {
        label: 'whole signup from the client side, client Argon2id m=64MiB t=3 p=4',
        op: () => signup(server.app, `wall-signup-${n++}`, 'wall-password', CLIENT_KSF),
      },
      baseline,
      check,
      seconds: 1,
      minOps: 2,
    },
    {
      name: 'login/client-wall',
      unit: 'logins/s',
      ours: {
        label: 'whole login from the client side, client Argon2id m=64MiB t=3 p=4',
        op: () => login(server.app, known.username, known.password, CLIENT_KSF),
      },
      baseline,
      check: async () => {
        await signup(server.app, known.username, known.password, CLIENT_KSF);
        await login(server.app, known.username, known.password, CLIENT_KSF);
      },
      seconds: 1,
      minOps: 2,
    },
    {
      name: 'login-start/unknown-vs-known-user',
      unit: 'requests/s',
      ours: { label: 'login/start for an unknown name', op: () => start(nextUnknown()) },
      baseline: { label: 'login/start for a known name', op: () => start(nextKnown()) },
      check: async () => {
        await signup(unthrottled.app, known.username, known.password, CHEAP_KSF);
        await start(nextKnown());
        await start(nextUnknown());
      },
      seconds: 0.5,
    },
  ];
}

const server = await startBenchServer();
const unthrottled = await startBenchServer({ throttle: NO_THROTTLE });
const results: { result: Result; goal: Goal | undefined }[] = [];
const started = performance.now();
const emit = (result: Result, goal: Goal | undefined) => {
  results.push({ result, goal });
  if (values.json) process.stdout.write(`${JSON.stringify(result)}\n`);
  else log(`  ${result.value} ${result.unit} vs ${result.baselineValue}: ${result.ratio}`);
};
try {
  if (selected('login/server-only/opaque+sqlite')) {
    log('login/server-only/opaque+sqlite ...');
    const { result, goal } = await serverOnlyLogins(server);
    emit(result, goal);
  }
  for (const c of infoCases(server, unthrottled)) {
    if (!selected(c.name)) continue;
    log(`${c.name} ...`);
    emit(await runCase(c, { rounds, timeScale, verbose: values.verbose }), c.goal);
  }
} finally {
  await server.close();
  await unthrottled.close();
}
log(`done in ${((performance.now() - started) / 1000).toFixed(1)} s (node ${process.version})`);
if (!values.json) {
  for (const { result: r, goal } of results) {
    const verdict =
      goal === undefined
        ? 'info'
        : meets(r, goal)
          ? `ratio >= ${goal} ok`
          : `ratio >= ${goal} MISSED`;
    process.stdout.write(
      `${r.case.padEnd(36)} ${String(r.value).padStart(10)} ${r.unit.padEnd(11)} baseline ${String(r.baselineValue).padStart(8)}  ratio ${r.ratio}  ${verdict}\n`,
    );
  }
}
