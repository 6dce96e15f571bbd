import { execFileSync } from 'node:child_process';
import { accessSync, constants, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import pkcs11js, { type Handle, type PKCS11 } from 'pkcs11js';

/**
 * SoftHSM2 for the PKCS#11 provider tests (Debian: apt-get install softhsm2). Every run gets its
 * own token directory and config file in a temp dir, so nothing touches /var/lib/softhsm, and
 * everything is removed afterwards.
 *
 * SoftHSM2 reads SOFTHSM2_CONF when the module is initialised (C_Initialize), and pkcs11js loads
 * the module into this process: the variable is set here, before any provider is created.
 */

/** Debian/Ubuntu's path; COFFER_SOFTHSM2_LIB overrides it (e.g. Homebrew or Fedora layouts). */
export const DEFAULT_SOFTHSM2_LIBRARY = '/usr/lib/softhsm/libsofthsm2.so';

export type SoftHsmSetup =
  | { readonly available: true; readonly library: string; readonly util: string }
  | { readonly available: false; readonly missing: string };

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function readable(path: string): boolean {
  try {
    accessSync(path, constants.R_OK);
    return true;
  } catch {
    return false;
  }
}

/** Finds the SoftHSM2 module and softhsm2-util (which initialises tokens). */
export function findSoftHsm(): SoftHsmSetup {
  const explicit = process.env.COFFER_SOFTHSM2_LIB;
  const library = explicit !== undefined && explicit !== '' ? explicit : DEFAULT_SOFTHSM2_LIBRARY;
  if (!readable(library)) return { available: false, missing: `SoftHSM2 module ${library}` };
  const util = (process.env.PATH ?? '')
    .split(delimiter)
    .filter((dir) => dir !== '')
    .map((dir) => join(dir, 'softhsm2-util'))
    .find(executable);
  if (util === undefined) return { available: false, missing: 'softhsm2-util (SoftHSM2)' };
  return { available: true, library, util };
}

export type SoftHsm = {
  readonly library: string;
  readonly pin: string;
  /** Slot id of each initialised token, by label (SoftHSM2 renumbers slots on init). */
  readonly slots: ReadonlyMap<string, number>;
  cleanup(): void;
};

/** Creates a private token directory with one initialised token per label (same PINs). */
export function createSoftHsm(
  setup: Extract<SoftHsmSetup, { available: true }>,
  labels: readonly string[],
): SoftHsm {
  const dir = mkdtempSync(join(tmpdir(), 'coffer-softhsm-'));
  const tokens = join(dir, 'tokens');
  mkdirSync(tokens);
  const conf = join(dir, 'softhsm2.conf');
  writeFileSync(
    conf,
    `directories.tokendir = ${tokens}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`,
  );
  const previous = process.env.SOFTHSM2_CONF;
  process.env.SOFTHSM2_CONF = conf;
  const pin = '246810';
  const slots = new Map<string, number>();
  try {
    for (const label of labels) {
      const out = execFileSync(
        setup.util,
        ['--init-token', '--free', '--label', label, '--so-pin', '13579', '--pin', pin],
        { env: { ...process.env, SOFTHSM2_CONF: conf }, encoding: 'utf8', stdio: 'pipe' },
      );
      const slot = /reassigned to slot (\d+)/.exec(out)?.[1];
      if (slot === undefined) throw new Error(`softhsm2-util did not report a slot: ${out}`);
      slots.set(label, Number(slot));
    }
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    library: setup.library,
    pin,
    slots,
    cleanup() {
      if (previous === undefined) delete process.env.SOFTHSM2_CONF;
      else process.env.SOFTHSM2_CONF = previous;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A second, independent pkcs11js session on a token, logged in as the user: the test's own view
 * of what the provider put there. Open it while a provider is open and close it before the
 * provider, so that the provider stays the one that initialised (and finalizes) the module.
 */
export type Inspector = {
  readonly p11: PKCS11;
  readonly session: Handle;
  readonly slot: Handle;
  /** Handles of every object whose CKA_LABEL is `label`. */
  findByLabel(label: string): Handle[];
  /** Attribute values as a boolean (CK_BBOOL) or number (CK_ULONG). */
  bool(object: Handle, type: number): boolean;
  ulong(object: Handle, type: number): number;
  close(): void;
};

export function openInspector(hsm: SoftHsm, label: string): Inspector {
  const p11 = new pkcs11js.PKCS11();
  p11.load(hsm.library);
  let owns = true;
  try {
    p11.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  } catch (err) {
    if (!String(err).includes('CKR_CRYPTOKI_ALREADY_INITIALIZED')) throw err;
    owns = false;
  }
  const slot = p11.C_GetSlotList(true).find((s) => p11.C_GetTokenInfo(s).label.trimEnd() === label);
  if (slot === undefined) throw new Error(`no token labelled ${label}`);
  const session = p11.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
  try {
    p11.C_Login(session, pkcs11js.CKU_USER, hsm.pin);
  } catch (err) {
    if (!String(err).includes('CKR_USER_ALREADY_LOGGED_IN')) throw err;
  }
  const value = (object: Handle, type: number): Buffer => {
    const [attr] = p11.C_GetAttributeValue(session, object, [{ type }]);
    if (attr === undefined) throw new Error(`attribute ${type} missing`);
    return attr.value;
  };
  return {
    p11,
    session,
    slot,
    findByLabel(wanted) {
      p11.C_FindObjectsInit(session, [{ type: pkcs11js.CKA_LABEL, value: wanted }]);
      try {
        return p11.C_FindObjects(session, 10);
      } finally {
        p11.C_FindObjectsFinal(session);
      }
    },
    bool: (object, type) => value(object, type)[0] === 1,
    ulong: (object, type) => {
      const bytes = value(object, type);
      return bytes.readUIntLE(0, Math.min(bytes.length, 6));
    },
    close() {
      try {
        p11.C_CloseSession(session);
      } catch {
        // Already gone (a test may have closed every session on the token).
      }
      if (owns) p11.C_Finalize();
      p11.close();
    },
  };
}
