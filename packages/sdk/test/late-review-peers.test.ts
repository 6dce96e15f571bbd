// Late review of a4313f0: message counters dropped at this device's own commit, while entries
// of the old epoch (from the removed device) are still queued for it.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { CofferClient, ConversationEvent, FetchLike } from '../src/index.js';
import { type TestServer, testClient, testServer, username } from './_server.js';

let server: TestServer;
beforeAll(async () => {
  server = await testServer();
});
afterAll(async () => {
  await server.close();
});

interface QueueEntry {
  cursor: number;
  kind: string;
  groupId: string;
  epoch: number;
  message: string;
}

interface User {
  name: string;
  client: CofferClient;
  accountId: string;
  /** Sees each request first; an answer it returns is the server's instead. */
  intercept?: (url: string, init: RequestInit) => Response | undefined;
  /** Sees (and may replace) each queue page the client reads. */
  queuePages?: (body: { messages: QueueEntry[] }) => { messages: QueueEntry[] } | undefined;
  /** Makes the next request whose URL and body contain `part` fail as a connection reset. */
  failOnce(part: string, method?: string, after?: boolean): void;
}

function hostileFetch(user: User, failures: { part: string; method?: string; after: boolean }[]) {
  const fetch: FetchLike = async (url, init) => {
    const method = init.method ?? 'GET';
    const at = failures.findIndex(
      (f) =>
        `${url} ${String(init.body ?? '')}`.includes(f.part) &&
        (f.method === undefined || f.method === method),
    );
    if (at >= 0) {
      const [failure] = failures.splice(at, 1);
      if (failure!.after) await server.fetch(url, init);
      throw new TypeError('connection reset');
    }
    const answer = user.intercept?.(url, init);
    if (answer) return answer;
    const res = await server.fetch(url, init);
    if (user.queuePages && method === 'GET' && url.includes('/v1/queue?') && res.ok) {
      const replaced = user.queuePages(await res.clone().json());
      if (replaced) return Response.json(replaced);
    }
    return res;
  };
  return fetch;
}

async function signup(
  prefix: string,
  overrides: Parameters<typeof testClient>[1] = {},
): Promise<User> {
  const name = username(prefix);
  const failures: { part: string; method?: string; after: boolean }[] = [];
  const user = {
    name,
    failOnce(part: string, method?: string, after = false) {
      failures.push({ part, ...(method === undefined ? {} : { method }), after });
    },
  } as User;
  user.client = await testClient({ fetch: hostileFetch(user, failures) }, overrides);
  const { account } = await user.client.signup(name, `pw-${name}-long enough`);
  await user.client.conversations.sync();
  user.accountId = account.accountId;
  return user;
}

const texts = (events: ConversationEvent[]) =>
  events.flatMap((e) => (e.type === 'message' ? [e.message.text] : []));
const errors = (events: ConversationEvent[]) =>
  events.flatMap((e) => (e.type === 'error' ? [e.error.detail ?? e.error.code] : []));

describe('a commit of ours that removes a member', () => {
  test('still notices messages the server dropped from that member before the commit', async () => {
    const alice = await signup('alice');
    const bob = await signup('bob');
    const carol = await signup('carol');
    const team = await alice.client.conversations.create({
      name: 'T',
      members: [bob.name, carol.name],
    });
    await bob.client.conversations.sync();
    await carol.client.conversations.sync();
    await bob.client.conversations.send(team.id, 'one');
    expect(texts(await alice.client.conversations.sync())).toEqual(['one']);
    await bob.client.conversations.send(team.id, 'two');
    await bob.client.conversations.send(team.id, 'three');
    // Alice removes Bob before she reads 'two' and 'three' (still queued, of the old epoch).
    await alice.client.conversations.remove(team.id, [bob.name]);
    // The server keeps 'two' from Alice for good.
    let withheld = false;
    alice.queuePages = (page) => ({
      ...page,
      messages: page.messages.filter((m) => {
        if (withheld || m.kind !== 'application') return true;
        withheld = true;
        return false;
      }),
    });
    const events = await alice.client.conversations.sync();
    expect(withheld).toBe(true);
    expect(texts(events)).toEqual(['three']);
    expect(errors(events)).toEqual(['MESSAGES_MISSING']);
  });
});
