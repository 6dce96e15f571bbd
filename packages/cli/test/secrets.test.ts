import { PassThrough } from 'node:stream';
import { describe, expect, test } from 'vitest';
import { CliError } from '../src/_errors.js';
import { printable } from '../src/_format.js';
import { MAX_LINE_BYTES, promptHidden, promptVisible, readLines } from '../src/_secrets.js';

/** A fake terminal: a stream that says it is a TTY and records raw-mode switches. */
function terminal() {
  const rawModes: boolean[] = [];
  const input = Object.assign(new PassThrough(), {
    isTTY: true,
    setRawMode(mode: boolean) {
      rawModes.push(mode);
      return input;
    },
  });
  let shown = '';
  const output = { isTTY: true, write: (s: string) => (shown += s) };
  return { input, output, rawModes, shown: () => shown };
}

describe('hidden prompt', () => {
  test('shows the question, never the typed answer, and restores the terminal', async () => {
    const t = terminal();
    const answer = promptHidden('Password: ', t.input, t.output);
    // Raw mode, as a terminal delivers keys: one at a time, Enter as "\r".
    for (const ch of 'correct horse\r') t.input.write(ch);
    await expect(answer).resolves.toBe('correct horse');
    expect(t.shown()).toBe('Password: \n');
    expect(t.rawModes).toEqual([true, false]);
  });

  test('line editing works unseen: backspace removes a character', async () => {
    const t = terminal();
    const answer = promptHidden('Password: ', t.input, t.output);
    t.input.write('hunter3\x7f2\r');
    await expect(answer).resolves.toBe('hunter2');
    expect(t.shown()).not.toContain('hunter');
    expect(t.shown()).not.toContain('*');
  });

  test('Ctrl-C is INTERRUPTED, Ctrl-D on an empty line is USAGE; the terminal is restored', async () => {
    const a = terminal();
    const interrupted = promptHidden('Password: ', a.input, a.output);
    a.input.write('secr\x03');
    await expect(interrupted).rejects.toSatisfy((e) => CliError.is(e, 'INTERRUPTED'));
    expect(a.shown()).not.toContain('secr');
    expect(a.rawModes.at(-1)).toBe(false);

    const b = terminal();
    const ended = promptHidden('Password: ', b.input, b.output);
    b.input.write('\x04');
    await expect(ended).rejects.toSatisfy((e) => CliError.is(e, 'USAGE'));
    expect(b.rawModes.at(-1)).toBe(false);
  });

  test('an abort signal stops the prompt', async () => {
    const t = terminal();
    const controller = new AbortController();
    const answer = promptHidden('Password: ', t.input, t.output, controller.signal);
    controller.abort();
    await expect(answer).rejects.toSatisfy((e) => CliError.is(e, 'INTERRUPTED'));
  });
});

describe('visible prompt (y/N questions)', () => {
  test('shows the question and the typed answer, and restores the terminal', async () => {
    const t = terminal();
    const answer = promptVisible('Add it? [y/N] ', t.input, t.output);
    for (const ch of 'y\r') t.input.write(ch);
    await expect(answer).resolves.toBe('y');
    // readline redraws the line as it is edited (clearing it first): the last drawing shows the
    // question, then the answer.
    const last = t.shown().split('\x1b[1G\x1b[0J').at(-1)!;
    const csi = new RegExp(`${String.fromCharCode(0x1b)}\\[[0-9]*[A-Za-z]`, 'g');
    expect(last.replace(csi, '')).toBe('Add it? [y/N] y\r\n');
    expect(t.rawModes).toEqual([true, false]);
  });
});

describe('--password-stdin lines', () => {
  test('takes the lines it needs, exactly (spaces kept, CRLF accepted), and stops there', async () => {
    const input = new PassThrough();
    const lines = readLines(input, 2);
    input.write(' old pw \r\nnew');
    input.write(' pw\nthird line, never needed\n');
    // The stream is never ended: readLines must not wait for the end.
    await expect(lines).resolves.toEqual([' old pw ', 'new pw']);
  });

  test('a last line without a newline counts; too few lines is USAGE', async () => {
    const one = new PassThrough();
    const a = readLines(one, 1);
    one.end('pw');
    await expect(a).resolves.toEqual(['pw']);

    const short = new PassThrough();
    const b = readLines(short, 2);
    short.end('only one\n');
    await expect(b).rejects.toThrow('--password-stdin expected 2 lines on stdin, got 1');
  });

  test('multi-byte characters split across chunks survive', async () => {
    const input = new PassThrough();
    const lines = readLines(input, 1);
    const bytes = Buffer.from('pässwörd\n');
    input.write(bytes.subarray(0, 2));
    input.write(bytes.subarray(2));
    await expect(lines).resolves.toEqual(['pässwörd']);
  });

  test('an overlong line is refused without echoing it', async () => {
    const input = new PassThrough();
    const lines = readLines(input, 1);
    input.write('x'.repeat(MAX_LINE_BYTES + 1));
    const err = await lines.catch((e: unknown) => e);
    expect(CliError.is(err, 'USAGE')).toBe(true);
    expect((err as Error).message).not.toContain('xxxx');
  });
});

test('printable() shows terminal control characters as escapes', () => {
  expect(printable('laptop')).toBe('laptop');
  expect(printable('a\x1b[2Jb\u202e')).toBe('a\\u001b[2Jb\\u202e');
  expect(printable('phone\n')).toBe('phone\\u000a');
  expect(printable('emoji 📱 ok')).toBe('emoji 📱 ok');
});
