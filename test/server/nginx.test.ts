// Two replicas behind nginx (Debian's), with session affinity on the X-Session-Id header (a
// conversation's cache lives on one replica). Under load one replica is stopped: its requests in
// flight end with a clean error event, every other request and every new one succeeds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MODEL, promptTokens, readSse, startCliServer, streamText } from '../helpers/server.ts';

function nginxPath(): string | null {
  for (const p of ['/usr/sbin/nginx', '/usr/bin/nginx']) {
    try { execFileSync(p, ['-v'], { stdio: 'ignore' }); return p; } catch { /* next */ }
  }
  return null;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

/** The nginx configuration of docs/serving.md's replicas section, with ports and paths filled in. */
export function nginxConfig(dir: string, listen: number, replicas: string[]): string {
  return `worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 512; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream rocketkv {
    # Session affinity: one session's turns reach the replica that holds its cache.
    hash $http_x_session_id consistent;
${replicas.map((r) => `    server ${r} max_fails=1 fail_timeout=30s;`).join('\n')}
  }
  server {
    listen 127.0.0.1:${listen};
    location / {
      proxy_pass http://rocketkv;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      # Stream tokens as they come.
      proxy_buffering off;
      proxy_read_timeout 600s;
      # A replica that is down or shutting down: the request goes to the next one.
      proxy_next_upstream error timeout http_502 http_503;
      proxy_next_upstream_tries 2;
    }
  }
}
`;
}

const nginx = nginxPath();
const skip = nginx === null && !process.env.CI ? 'nginx is not installed: `apt-get install nginx` to include the replica test' : false;

test('two replicas behind nginx: affinity by session, and one stopped under load', { skip }, async () => {
  const a = await startCliServer(['--shutdown-grace', '0', '--kv-memory', '8MB']);
  const b = await startCliServer(['--shutdown-grace', '0', '--kv-memory', '8MB']);
  const dir = mkdtempSync(join(tmpdir(), 'rocketkv-nginx-'));
  const port = await freePort();
  const replicas = [a.url, b.url].map((u) => u.replace('http://', ''));
  writeFileSync(join(dir, 'nginx.conf'), nginxConfig(dir, port, replicas));
  const proxy = spawn(nginx!, ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log'), '-g', 'daemon off;'], { stdio: 'ignore' });
  const lb = `http://127.0.0.1:${port}`;
  try {
    for (let i = 0; ; i++) {
      const r = await fetch(`${lb}/health`).catch(() => null);
      if (r?.status === 200) break;
      if (i > 200) throw new Error(`nginx did not start: ${readFileSync(join(dir, 'error.log'), 'utf8')}`);
      await new Promise((r) => setTimeout(r, 25));
    }
    const served = async (url: string): Promise<number> => {
      const m = /^vllm:request_success_total\{finished_reason="length",model_name="[^"]+"\} (\d+)$/m.exec(await (await fetch(`${url}/metrics`)).text());
      return Number(m?.[1] ?? 0);
    };
    const post = (session: string, body: unknown) => fetch(`${lb}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-session-id': session }, body: JSON.stringify(body) });
    const small = { model: MODEL, prompt: 'The value of key 3 is', max_tokens: 2, temperature: 0, ignore_eos: true };

    // Which replica each session reaches: the same one on every request.
    const home = new Map<string, 'a' | 'b'>();
    for (let s = 0; s < 12; s++) {
      const session = `session-${s}`;
      const seen = new Set<string>();
      for (let k = 0; k < 3; k++) {
        const [ba, bb] = [await served(a.url), await served(b.url)];
        assert.equal((await post(session, small)).status, 200);
        const [aa, ab] = [await served(a.url), await served(b.url)];
        seen.add(aa > ba ? 'a' : ab > bb ? 'b' : '?');
      }
      assert.equal(seen.size, 1, `${session} stays on one replica (${[...seen]})`);
      home.set(session, [...seen][0] as 'a' | 'b');
    }
    const onB = [...home].filter(([, r]) => r === 'b').map(([s]) => s);
    const onA = [...home].filter(([, r]) => r === 'a').map(([s]) => s);
    assert.ok(onA.length >= 2 && onB.length >= 2, `sessions spread over both replicas (a ${onA.length}, b ${onB.length})`);

    // A conversation's second turn, through the balancer, finds its cache on its replica.
    for (const session of [onA[0]!, onB[0]!]) {
      const chat = async (messages: { role: string; content: string }[]) => {
        const res = await fetch(`${lb}/v1/chat/completions`, {
          method: 'POST', headers: { 'content-type': 'application/json', 'x-session-id': session },
          body: JSON.stringify({ model: MODEL, messages, max_tokens: 4, temperature: 0, ignore_eos: true }),
        });
        assert.equal(res.status, 200);
        return res.json() as Promise<{ choices: { message: { content: string } }[]; usage: { prompt_tokens: number; completion_tokens: number; prompt_tokens_details: { cached_tokens: number } } }>;
      };
      const u1 = { role: 'user', content: `Line 0: the value of key 5 is 1234. What is the value of key 5? (${session})` };
      const t1 = await chat([u1]);
      const t2 = await chat([u1, { role: 'assistant', content: t1.choices[0]!.message.content }, { role: 'user', content: 'And again?' }]);
      assert.equal(t2.usage.prompt_tokens_details.cached_tokens, t1.usage.prompt_tokens + t1.usage.completion_tokens, `${session}: the second turn reuses the first's cache`);
    }

    // Load on both; replica b is stopped once every stream has started.
    const sessions = [...onA.slice(0, 4), ...onB.slice(0, 4)];
    const bodies = await Promise.all(sessions.map(async (_, i) => ({ model: MODEL, prompt: await promptTokens(300, 60 + i), max_tokens: 120, temperature: 0, ignore_eos: true, stream: true })));
    let started = 0;
    const results = await Promise.all(sessions.map(async (session, i) => {
      const res = await post(session, bodies[i]);
      assert.equal(res.status, 200);
      return readSse(res, (_ev, n) => { if (n === 2 && ++started === sessions.length) b.child.kill('SIGTERM'); });
    }));
    assert.equal(await b.exited, 0, 'the stopped replica exits 0');
    results.forEach((r, i) => {
      const session = sessions[i]!;
      if (home.get(session) === 'a') {
        assert.ok(r.done && !r.events.some((e) => 'error' in e), `${session} on the live replica completes`);
      } else {
        const last = r.events.at(-1) as { error?: { code: string } };
        assert.equal(r.done, false);
        assert.equal(last.error?.code, 'shutting_down', `${session} on the stopped replica ends with a clean error`);
      }
    });

    // New requests, of every session: all succeed on the remaining replica.
    for (const [session] of home) {
      const res = await post(session, { ...bodies[0], max_tokens: 4, stream: false });
      assert.equal(res.status, 200, `${session} after the stop`);
    }
    const again = await readSse(await post(onB[0]!, bodies[0]));
    assert.ok(again.done);
    assert.ok(streamText(again.events).length > 0);
  } finally {
    proxy.kill('SIGTERM');
    a.child.kill('SIGTERM');
    b.child.kill('SIGKILL');
    await a.exited;
    rmSync(dir, { recursive: true, force: true });
  }
});
