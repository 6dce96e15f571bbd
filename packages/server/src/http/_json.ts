import type { AppContext } from './_env.js';
import { type JsonObject, parseJsonObject } from './validate.js';

/**
 * The request body as a JSON object (read by the body-limit middleware).
 *
 * @throws {ServerError} `BAD_REQUEST` for a missing or malformed body.
 */
export function readJson(c: AppContext, op: string): JsonObject {
  return parseJsonObject(c.get('body'), op);
}
