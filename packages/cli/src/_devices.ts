import type { DeviceInfo } from '@coffer/sdk';
import { refuseIfLoggedIn, requireLogin } from './_account.js';
import { type Context, confirm, joinOptions, note, result, withClient } from './_context.js';
import { CliError, usageError } from './_errors.js';
import { columns, formatTime, printable, quoted } from './_format.js';
import { publishKeyPackages } from './_key-packages.js';
import { type Prompt, promptHidden, readLines } from './_secrets.js';
import { EXIT } from './exit-status.js';

/** An id this short would match too much by accident (ids are 22 characters). */
const MIN_ID_PREFIX = 4;

/** The QR payload of a link code (spec account-v1 §6), accepted in place of the code. */
const LINK_PAYLOAD_PREFIX = /^coffer-link:1:/i;

/** Whole minutes until `expiresAt` (ms since the epoch), at least 1. */
function minutesLeft(expiresAt: number): number {
  return Math.max(1, Math.round((expiresAt - Date.now()) / 60_000));
}

function deviceLine(device: DeviceInfo): string {
  return `${quoted(device.name)} (${device.id})`;
}

/** The device `ref` names: its id, or a unique beginning of it. */
export function findDevice(devices: readonly DeviceInfo[], ref: string): DeviceInfo {
  const exact = devices.find((d) => d.id === ref);
  if (exact) return exact;
  const matches = ref.length >= MIN_ID_PREFIX ? devices.filter((d) => d.id.startsWith(ref)) : [];
  if (matches.length === 1) return matches[0]!;
  if (matches.length > 1)
    throw usageError(
      `${printable(ref)} begins ${matches.length} device ids`,
      'type more of the id (coffer devices lists them)',
    );
  throw new CliError(
    'UNKNOWN_DEVICE',
    `no device ${printable(ref)} on this account`,
    ref.length < MIN_ID_PREFIX
      ? `give the id, or at least its first ${MIN_ID_PREFIX} characters (coffer devices lists them)`
      : undefined,
  );
}

export function list(ctx: Context): Promise<number> {
  return withClient(ctx, async (client) => {
    await requireLogin(ctx, client);
    const devices = await client.devices.list();
    const rows = devices.map((d) => [
      d.current ? '*' : ' ',
      d.id,
      formatTime(d.addedAt),
      printable(d.name),
    ]);
    result(
      ctx,
      { devices },
      `${columns([[' ', 'ID', 'ADDED', 'NAME'], ...rows])}\n(* this device)`,
    );
    return EXIT.ok;
  });
}

/** `devices link`, on the logged-in device: shows a code, confirms the device that uses it. */
export function link(ctx: Context): Promise<number> {
  return withClient(ctx, async (client) => {
    const me = await requireLogin(ctx, client);
    const offer = await client.devices.startLink();
    // The code is printed now, before the wait: with --json this is a first JSON line of its own.
    result(
      ctx,
      { link: { code: offer.code, qr: offer.qr, expiresAt: offer.expiresAt } },
      `To add a device to ${printable(me.username)}, run this on the new device:

    coffer devices join${ctx.serverOption}

and type this code when it asks: ${offer.code}
(the same code as a QR payload: ${offer.qr})
The code works once, for ${minutesLeft(offer.expiresAt)} minutes. Anyone who has it can ask to join
the account: show it to no one else, and add only the device you expect when asked here.
`,
    );
    note(ctx, 'waiting for the new device (Ctrl-C cancels)...');
    const device = await offer.wait({
      ...(ctx.io.signal ? { signal: ctx.io.signal } : {}),
      // spec account-v1 §6: nothing is added before the user confirms the device by its name.
      onRequest: (request) =>
        confirm(
          ctx,
          `a device named ${quoted(request.deviceName)} (${request.deviceId}) used the code: add it to ${printable(me.username)}?`,
          { request },
        ),
    });
    result(ctx, { device }, `added the device ${deviceLine(device)} to ${printable(me.username)}`);
    return EXIT.ok;
  });
}

/**
 * The link code, never from argv (the process list and shell history would keep it): a hidden
 * prompt on a terminal, else the first line of stdin.
 */
async function readLinkCode(ctx: Context): Promise<string> {
  const { io } = ctx;
  const tty = io.stdinIsTTY ?? io.stdin.isTTY === true;
  let text: string;
  if (tty) {
    const prompt: Prompt =
      io.prompt ?? ((question) => promptHidden(question, io.stdin, io.stderr, io.signal));
    text = await prompt('Link code (shown by coffer devices link on the other device): ', {
      hidden: true,
    });
  } else {
    text = await readLines(io.stdin, 1).then(
      ([line]) => line ?? '',
      () => '',
    );
  }
  const code = text.trim().replace(LINK_PAYLOAD_PREFIX, '');
  if (code === '')
    throw usageError(
      tty ? 'no link code typed' : 'expected the link code on the first line of stdin',
      'coffer devices link on a logged-in device shows it',
    );
  return code;
}

/** `devices join`, on the new device: reads the code and waits for the other device. */
export function joinLink(ctx: Context): Promise<number> {
  // A --device-name the SDK would refuse fails before the code is asked for (and spent).
  const options = joinOptions(ctx);
  return withClient(ctx, async (client) => {
    await refuseIfLoggedIn(ctx, client);
    // The SDK's parser takes a code typed with spaces or dashes, and the QR payload.
    const code = await readLinkCode(ctx);
    note(ctx, 'joining; waiting for the other device to confirm this one...');
    const account = await client.devices.joinByLink(code, {
      ...options,
      ...(ctx.io.signal ? { signal: ctx.io.signal } : {}),
    });
    ctx.username = account.username;
    await publishKeyPackages(ctx, client);
    result(
      ctx,
      { account },
      `this device joined ${printable(account.username)} as ${quoted(account.deviceName)} (${account.deviceId})`,
    );
    return EXIT.ok;
  });
}

export function rename(ctx: Context): Promise<number> {
  return withClient(ctx, async (client) => {
    await requireLogin(ctx, client);
    const devices = await client.devices.list();
    let target: DeviceInfo | undefined;
    let name: string;
    if (ctx.args.length === 2) {
      target = findDevice(devices, ctx.args[0]!);
      name = ctx.args[1]!;
    } else {
      name = ctx.args[0]!;
      const looksLikeId = devices.find(
        (d) => d.id === name || (name.length >= MIN_ID_PREFIX && d.id.startsWith(name)),
      );
      if (looksLikeId)
        throw usageError(
          `${printable(name)} is ${looksLikeId.id === name ? 'the id' : 'the beginning of the id'} of the device ${quoted(looksLikeId.name)}: rename it to what?`,
          `coffer devices rename ${printable(name)} NAME; to give this device that name, put its id first`,
        );
      target = devices.find((d) => d.current);
      if (!target) throw new CliError('ERROR', "this device is not on the account's device list");
    }
    await client.devices.rename(target.id, name);
    const renamed = (await client.devices.list()).find((d) => d.id === target.id) ?? {
      ...target,
      name,
    };
    result(
      ctx,
      { device: renamed },
      `renamed ${target.current ? 'this device' : 'the device'} ${target.id}: ${quoted(target.name)} -> ${quoted(renamed.name)}`,
    );
    return EXIT.ok;
  });
}

export function revoke(ctx: Context): Promise<number> {
  return withClient(ctx, async (client) => {
    await requireLogin(ctx, client);
    const target = findDevice(await client.devices.list(), ctx.args[0]!);
    if (target.current)
      throw usageError(
        `${target.id} is this device, which cannot revoke itself`,
        'revoke it from another device of the account; to stop using it, coffer logout',
      );
    await client.devices.revoke(target.id);
    result(
      ctx,
      { revoked: target },
      `revoked the device ${deviceLine(target)}: it is off the account's device list and its session has ended`,
    );
    return EXIT.ok;
  });
}
