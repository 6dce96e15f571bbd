import { type CofferClient, SdkError } from '@coffer/sdk';
import { type Context, note } from './_context.js';

/**
 * After signup, login, recover or joining by link: publishes this device's key packages, so
 * that others can add it to conversations. Best effort: a failure is a warning.
 */
export async function publishKeyPackages(ctx: Context, client: CofferClient): Promise<void> {
  try {
    await client.conversations.prepare();
  } catch (err) {
    const code = SdkError.is(err) ? err.code : 'ERROR';
    note(
      ctx,
      `warning: could not publish this device's conversation keys yet (${code}); coffer messages tries again`,
    );
  }
}
