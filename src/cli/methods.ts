import { methodEntries } from '../compress/registry.ts';

export function methodsCommand(): void {
  const entries = methodEntries();
  const width = Math.max(...entries.map((e) => e.name.length));
  for (const e of entries) {
    const defaults = Object.entries(e.options).map(([k, s]) => `${k}=${String(s.default)}`).join(' ');
    process.stdout.write(`${e.name.padEnd(width)}  ${e.summary}${defaults ? `  [${defaults}]` : ''}\n`);
  }
}
