/** Running the CLI from sources in a child process, and the shape every user-facing error has. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const CLI_ENTRY = fileURLToPath(new URL('./rocketkv.ts', import.meta.url));

export interface CliResult { code: number; stdout: string; stderr: string }

export function runCli(args: string[], env: NodeJS.ProcessEnv = process.env): CliResult {
  const r = spawnSync(process.execPath, ['--import', 'tsx', CLI_ENTRY, ...args], { encoding: 'utf8', env });
  return { code: r.status ?? -1, stderr: r.stderr, stdout: r.stdout };
}

/** Exactly one line on stderr, naming the problem, a non-zero exit, and no stack trace. */
export function assertOneLineError(r: { code: number; stderr: string }, pattern: RegExp): void {
  assert.notEqual(r.code, 0, 'exit code must be non-zero');
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line expected, got:\n${r.stderr}`);
  assert.match(lines[0]!, /^rocketkv: /);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at |internal error/);
}
