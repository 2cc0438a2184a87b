// The chat page at / in headless Chromium (Debian's chromium, driven by playwright-core): a message
// streams its reply, and the KV panel shows bytes stored against the full cache and a cell per head.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { MODEL, startTestServer } from '../helpers/server.ts';
import { smollm2Path } from '../helpers/smollm2.ts';

function chromiumPath(): string | null {
  for (const name of ['chromium', 'chromium-browser']) {
    try {
      return execFileSync('which', [name], { encoding: 'utf8' }).trim();
    } catch { /* next */ }
  }
  return null;
}

const exe = chromiumPath();
const skip = exe === null && !process.env.CI ? 'Chromium is not installed: `apt-get install chromium` to include the page test' : false;

test('the chat page streams a reply and draws its KV panel', { skip }, async () => {
  // SmolLM2 (a chat model) when it is in the cache; the bundled model answers chats with an empty reply.
  const smol = smollm2Path();
  const name = smol ? 'SmolLM2-135M-Instruct' : MODEL;
  const server = await startTestServer(smol ? { modelName: name, load: { model: smol, threads: 2 } } : {});
  const browser = await chromium.launch({ executablePath: exe!, args: ['--no-sandbox', '--headless=new'] });
  try {
    const page = await browser.newPage({ viewport: { width: 1100, height: 760 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(server.url);
    assert.equal(await page.title(), `rocketkv · ${name}`);
    await page.selectOption('#method', 'kvcompress');
    await page.fill('#budget', '64');
    await page.fill('#max-tokens', '24');
    const facts = Array.from({ length: 30 }, (_, i) => `The value of key ${(i * 37) % 100} is ${(i * 7919) % 100000}.`).join(' ');
    const question = `${facts} What is the value of key 74?`;
    await page.fill('#prompt', question);
    await page.press('#prompt', 'Enter');
    const panel = page.locator('[data-testid=kv-panel]');
    await panel.waitFor({ timeout: 30_000 });
    const reply = (await page.locator('[data-testid=reply] > div').first().textContent()) ?? '';
    const summary = (await panel.locator('div').first().textContent()) ?? '';
    assert.match(summary, /^KV kvcompress \(budget 64\): .* stored vs .* for the full cache, compression \d+\.\d\dx; tokens per head min \d+/);
    // The page shows what the API answers for the same request.
    const api = await fetch(`${server.url}/v1/chat/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: name, messages: [{ role: 'user', content: question }], max_tokens: 24, temperature: 0, kv: { method: 'kvcompress', budget: 64 } }),
    }).then((r) => r.json() as Promise<{ choices: { message: { content: string } }[]; kv: { perHead: { layers: number; heads: number; kvs: number[] } } }>);
    assert.equal(reply, api.choices[0]!.message.content);
    const ph = api.kv.perHead;
    const cells = panel.locator('.grid div[title]');
    assert.equal(await cells.count(), ph.layers * ph.heads, 'one cell per layer and stored head');
    assert.equal(await cells.last().getAttribute('title'), `layer ${ph.layers - 1}, head ${ph.heads - 1}: ${ph.kvs.at(-1)} tokens kept`);
    if (smol) assert.ok(reply.length > 0, 'the reply is not empty');
    assert.deepEqual(errors, []);
    const shot = process.env.ROCKETKV_SCREENSHOT ?? join(tmpdir(), 'rocketkv-page.png');
    await page.screenshot({ path: shot, fullPage: true });
    assert.ok(existsSync(shot));
  } finally {
    await browser.close();
    await server.shutdown(0);
  }
});
