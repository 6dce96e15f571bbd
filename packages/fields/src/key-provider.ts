/**
 * A key provider holds key-encryption keys (KEKs) and never lets them out: data keys are sent in
 * to be wrapped, and wrapped data keys are sent in to be unwrapped. This is the whole interface,
 * one method, so that a local key file, a PKCS#11 HSM and a KMIP key manager are interchangeable.
 *
 * `context` is associated data the provider MUST bind to the wrapped key (AEAD associated data,
 * or equivalent), so that a wrapped key moved to another keyring entry fails to unwrap.
 */
export type KeyOperation =
  | {
      readonly op: 'wrap';
      readonly kekId: string;
      readonly key: Uint8Array;
      readonly context: Uint8Array;
    }
  | {
      readonly op: 'unwrap';
      readonly kekId: string;
      readonly wrapped: Uint8Array;
      readonly context: Uint8Array;
    };

export interface KeyProvider {
  /** What kind of provider this is, recorded beside each wrapped key: `local`, `pkcs11`, `kmip`. */
  readonly kind: string;
  /**
   * Wraps a 32-byte data key (`op: 'wrap'`, returns the wrapped bytes) or unwraps one (`op:
   * 'unwrap'`, returns the 32-byte key) under the KEK named `kekId`.
   *
   * Implementations throw {@link FieldsError} with: `DECRYPTION_FAILED` when a wrapped key does not
   * unwrap (tampered, other KEK, other context); `UNKNOWN_KEY` when `kekId` does not exist;
   * `PROVIDER_UNAVAILABLE` (retryable) when the provider cannot be reached; `PROVIDER_ERROR` for
   * anything else the provider reports. Messages never contain key material.
   */
  keyOperation(request: KeyOperation): Promise<Uint8Array>;
}
