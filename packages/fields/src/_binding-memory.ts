/** Where an ORM helper sealed a ciphertext: what it may be written back to. */
export interface Binding {
  readonly table: string;
  readonly column: string;
  readonly rowId: string;
  readonly tenant: string | undefined;
}

/**
 * Ciphertexts from `encryptRow()` remembered for the binding check on write; older ones are
 * still checked, by the AEAD, when read. Bounded so that encrypting without writing cannot grow
 * memory.
 */
export const MAX_REMEMBERED_CIPHERTEXTS = 10_000;

/**
 * Remembers which row and column each ciphertext was sealed for, so an ORM integration can
 * refuse a write that moves it elsewhere before the database sees it. Text ciphertexts are kept
 * in a bounded map (oldest forgotten first); binary ones in a WeakMap keyed by the array.
 */
export function createBindingMemory() {
  const text = new Map<string, Binding>();
  const bytes = new WeakMap<Uint8Array, Binding>();
  return {
    remember(value: unknown, binding: Binding): void {
      if (value instanceof Uint8Array) {
        bytes.set(value, binding);
      } else if (typeof value === 'string') {
        text.set(value, binding);
        if (text.size > MAX_REMEMBERED_CIPHERTEXTS) {
          const oldest = text.keys().next();
          if (!oldest.done) text.delete(oldest.value);
        }
      }
    },
    bindingOf(value: unknown): Binding | undefined {
      if (value instanceof Uint8Array) return bytes.get(value);
      return typeof value === 'string' ? text.get(value) : undefined;
    },
  };
}
