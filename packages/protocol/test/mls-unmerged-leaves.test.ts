import { utf8Encode } from '@coffer/crypto';
import { expect, test } from 'vitest';
import { createTsMlsEngine, type MlsGroup } from '../src/index.js';

// RFC 9420 §12.4.3.1 asks a joiner to check that each unmerged leaf of a parent node is a
// non-blank leaf below it, and that every non-blank node *between* the two lists it too.
// ts-mls 2.0.0-rc.10 compared the parent's whole list with that of every non-blank node on the
// leaf's path up to the root, so a valid tree whose root also lists a leaf added under the other
// half was refused: after two removals (one in each half), self-updates and two adds without a
// path, no one could join the group again, by Welcome or externally. Fails on the unpatched file.

test('a tree whose root lists unmerged leaves of both halves is joined', async () => {
  const engine = await createTsMlsEngine({ validateCredential: async () => true });
  const names = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'x', 'y'];
  const kps = await Promise.all(
    names.map((n) => engine.createKeyPackage({ identity: utf8Encode(n) })),
  );
  const g: MlsGroup[] = [];
  g[0] = await engine.createGroup(utf8Encode('g'), kps[0]!);
  const add = await engine.addMembers(
    g[0],
    kps.slice(1, 8).map((k) => k.publicKeyPackage),
  );
  g[0] = add.group;
  for (let i = 1; i < 8; i++) g[i] = await engine.joinFromWelcome(add.welcome, kps[i]!);
  const live = new Set([0, 1, 2, 3, 4, 5, 6, 7]);
  const commitBy = async (i: number, out: { group: MlsGroup; commit: Uint8Array }) => {
    g[i] = out.group;
    for (const j of live) if (j !== i) g[j] = (await engine.process(g[j]!, out.commit)).group;
  };
  // Every member's path is set; then leaf 1 and leaf 5 are removed, and the members beside them
  // set their paths again: nodes 3 and 11 (over each half) and the root hold keys, with a blank
  // leaf under each half.
  for (let i = 0; i < 8; i++) await commitBy(i, await engine.selfUpdate(g[i]!));
  live.delete(1);
  live.delete(5);
  await commitBy(4, await engine.removeMembers(g[4]!, [1, 5]));
  await commitBy(0, await engine.selfUpdate(g[0]!));
  await commitBy(4, await engine.selfUpdate(g[4]!));
  // Adds without a path: X at leaf 1 (unmerged at node 3 and the root), Y at leaf 5 (node 11 and
  // the root): the root lists [1, 5], node 3 only [1].
  const ax = await engine.addMembers(g[2]!, [kps[8]!.publicKeyPackage, kps[9]!.publicKeyPackage]);
  await commitBy(2, { group: ax.group, commit: ax.commit });
  const X = await engine.joinFromWelcome(ax.welcome, kps[8]!);
  const Y = await engine.joinFromWelcome(ax.welcome, kps[9]!);
  expect(X.active && Y.active).toBe(true);
  // And the group goes on: a message from a joiner reaches a member.
  const sent = await engine.encrypt(X, utf8Encode('hello'));
  const got = await engine.process(g[0]!, sent.message);
  g[0] = got.group;
  expect(got.result.kind === 'application' && new TextDecoder().decode(got.result.plaintext)).toBe(
    'hello',
  );
  // The external join (resync) validates the same tree.
  const info = await engine.groupInfo(g[0]!);
  const z = await engine.createKeyPackage({ identity: utf8Encode('z') });
  const ext = await engine.joinExternal(info, z);
  expect(ext.group.active).toBe(true);
});
