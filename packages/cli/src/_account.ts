import { type AccountInfo, type CofferClient, normalizeUsername, SdkError } from '@coffer/sdk';
import {
  askSecrets,
  type Context,
  joinOptions,
  note,
  outputFailure,
  result,
  withClient,
  written,
} from './_context.js';
import { CliError, usageError } from './_errors.js';
import { columns, printable, quoted } from './_format.js';
import { publishKeyPackages } from './_key-packages.js';
import { EXIT } from './exit-status.js';

/** "alice; this device is "laptop" (id)" */
function accountLine(account: AccountInfo): string {
  return `${printable(account.username)}; this device is ${quoted(account.deviceName)} (${account.deviceId})`;
}

/**
 * Fails before any password is asked when this home is already logged in: signup, login,
 * recover and joining by link each make this home a device of an account.
 */
export async function refuseIfLoggedIn(ctx: Context, client: CofferClient): Promise<void> {
  let me: AccountInfo | undefined;
  try {
    me = await client.whoami();
  } catch (err) {
    // A revoked device's session is already gone (the SDK ends it): it may log in again.
    if (!SdkError.is(err, 'DEVICE_REVOKED')) throw err;
  }
  if (me)
    throw new CliError(
      'ALREADY_LOGGED_IN',
      `this home is logged in as ${printable(me.username)}`,
      `coffer logout first, or pass --home DIR to act as another device (this home: ${ctx.home})`,
    );
}

/** The account this home is logged in to, or NOT_LOGGED_IN before any password is asked. */
export async function requireLogin(ctx: Context, client: CofferClient): Promise<AccountInfo> {
  const me = await client.whoami();
  if (!me) throw new CliError('NOT_LOGGED_IN', 'not logged in');
  ctx.username = me.username;
  return me;
}

export function signup(ctx: Context): Promise<number> {
  const username = ctx.args[0]!;
  ctx.username = username;
  // A username or device name the SDK would refuse fails before the password is typed twice.
  normalizeUsername(username, 'username');
  const options = joinOptions(ctx);
  return withClient(ctx, async (client) => {
    await refuseIfLoggedIn(ctx, client);
    const [password] = await askSecrets(ctx, [
      {
        prompt: `New password for ${printable(username)}: `,
        confirm: 'Repeat the password: ',
        what: 'password',
      },
    ]);
    note(ctx, "creating the account and this device's keys...");
    const { account, recoveryCode } = await client.signup(username, password!, options);
    await publishKeyPackages(ctx, client);
    // Shown this once: a stdout that cannot take it (a closed pipe, a full disk) must not end
    // in status 0 as if the user had it.
    await written(
      ctx,
      { account, recoveryCode },
      `created the account ${accountLine(account)}

Recovery code, shown this once:

    ${recoveryCode}

Write it down and keep it offline, away from this computer. It is the only way back into the
account if the password is forgotten, and nobody, the server's operators included, can reset
the password for you. Anyone with this code and the username can take over the account.
To use it: coffer recover ${printable(account.username)}
`,
    ).catch((err: unknown) => {
      const reason = outputFailure(err);
      if (reason === undefined) throw err;
      throw new CliError(
        'OUTPUT_FAILED',
        `cannot write to stdout (${reason}): the account ${printable(account.username)} was created and this device is logged in, but its recovery code was not shown, and it cannot be shown again`,
        'without the recovery code a forgotten password cannot be replaced: keep the password safe',
      );
    });
    return EXIT.ok;
  });
}

export function login(ctx: Context): Promise<number> {
  const username = ctx.args[0]!;
  ctx.username = username;
  normalizeUsername(username, 'username');
  const options = joinOptions(ctx);
  return withClient(ctx, async (client) => {
    await refuseIfLoggedIn(ctx, client);
    const [password] = await askSecrets(ctx, [
      { prompt: `Password for ${printable(username)}: `, what: 'password' },
    ]);
    const account = await client.login(username, password!, options);
    await publishKeyPackages(ctx, client);
    result(ctx, { account }, `logged in as ${accountLine(account)}`);
    return EXIT.ok;
  });
}

export function logout(ctx: Context): Promise<number> {
  // No whoami first: that asks the server, and logging out must work without it.
  return withClient(ctx, async (client) => {
    try {
      await client.logout();
    } catch (err) {
      if (!SdkError.is(err, 'NOT_LOGGED_IN')) throw err;
      result(ctx, { loggedOut: false }, 'not logged in; nothing to do');
      return EXIT.ok;
    }
    result(ctx, { loggedOut: true }, 'logged out');
    return EXIT.ok;
  });
}

export function whoami(ctx: Context): Promise<number> {
  return withClient(ctx, async (client) => {
    const account = await requireLogin(ctx, client);
    result(
      ctx,
      { account },
      columns([
        ['username', printable(account.username)],
        ['account', account.accountId],
        ['device', `${quoted(account.deviceName)} (${account.deviceId})`],
        ['server', ctx.server],
        ['home', printable(ctx.home)],
      ]),
    );
    return EXIT.ok;
  });
}

export function passwd(ctx: Context): Promise<number> {
  return withClient(ctx, async (client) => {
    const me = await requireLogin(ctx, client);
    const [current, next] = await askSecrets(ctx, [
      { prompt: `Current password for ${printable(me.username)}: `, what: 'current password' },
      { prompt: 'New password: ', confirm: 'Repeat the new password: ', what: 'new password' },
    ]);
    if (current === next)
      throw usageError('the new password is the same as the current one', 'choose a new one');
    note(ctx, 'changing the password...');
    await client.changePassword(current!, next!);
    result(
      ctx,
      { passwordChanged: true },
      `changed the password of ${printable(me.username)}; the recovery code stays valid`,
    );
    return EXIT.ok;
  });
}

export function recover(ctx: Context): Promise<number> {
  const username = ctx.args[0]!;
  ctx.username = username;
  normalizeUsername(username, 'username');
  const options = joinOptions(ctx);
  return withClient(ctx, async (client) => {
    await refuseIfLoggedIn(ctx, client);
    const [code, password] = await askSecrets(ctx, [
      { prompt: 'Recovery code: ', what: 'recovery code' },
      { prompt: 'New password: ', confirm: 'Repeat the new password: ', what: 'new password' },
    ]);
    note(ctx, 'recovering the account...');
    const account = await client.recover(username, code!, password!, options);
    await publishKeyPackages(ctx, client);
    result(
      ctx,
      { account },
      `recovered ${accountLine(account)}
The new password is set. The recovery code stays valid: keep it as safe as before.`,
    );
    return EXIT.ok;
  });
}
