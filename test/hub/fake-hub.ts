// A local stand-in for the Hugging Face hub, answering the endpoints @huggingface/hub and our
// transfer call (node_modules/@huggingface/hub/src/lib/{model-info,list-files,paths-info,
// file-download-info}.ts), plus a CDN on another origin that LFS files redirect to, as the hub does.
import { createHash } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeFile {
  content: Buffer;
  /** Stored in LFS: listed with lfs.oid = sha256, resolved by a redirect to the CDN. */
  lfs?: boolean;
  /** Lies the hub tells about the file (tree, paths-info, resolve headers), not the bytes served. */
  advertisedBytes?: number;
  advertisedSha256?: string;
  advertisedOid?: string;
}

export interface FakeRepo {
  commit: string;
  files: Record<string, FakeFile>;
  /** Gated: every endpoint answers 401 unless `Authorization: Bearer <token>`. */
  token?: string;
}

export interface SeenRequest {
  server: 'hub' | 'cdn';
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
}

export function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

export function gitOid(b: Buffer): string {
  return createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

function listed(path: string, f: FakeFile): Record<string, unknown> {
  const size = f.advertisedBytes ?? f.content.length;
  return f.lfs
    ? { type: 'file', path, size, oid: gitOid(Buffer.from(`lfs pointer ${path}`)), lfs: { oid: f.advertisedSha256 ?? sha256(f.content), size, pointerSize: 134 } }
    : { type: 'file', path, size, oid: f.advertisedOid ?? gitOid(f.content) };
}

export class FakeHub {
  readonly repos = new Map<string, FakeRepo>();
  requests: SeenRequest[] = [];
  /** The next byte transfer (not the 1-byte probe) is cut after this many bytes. */
  cutAfterBytes: number | undefined;
  /** Answer 200 with the whole file to a Range request. */
  ignoreRange = false;
  endpoint = '';
  private cdnOrigin = '';

  private constructor(private readonly hub: Server, private readonly cdn: Server) {}

  static async start(): Promise<FakeHub> {
    const hub = new FakeHub(createServer(), createServer());
    hub.hub.on('request', (req, res) => { hub.onHub(req, res).catch((e) => { res.statusCode = 500; res.end(String(e)); }); });
    hub.cdn.on('request', (req, res) => hub.onCdn(req, res));
    await Promise.all([hub.hub, hub.cdn].map((s) => new Promise<void>((ok) => s.listen(0, '127.0.0.1', ok))));
    hub.endpoint = `http://127.0.0.1:${(hub.hub.address() as AddressInfo).port}`;
    hub.cdnOrigin = `http://127.0.0.1:${(hub.cdn.address() as AddressInfo).port}`;
    return hub;
  }

  async close(): Promise<void> {
    for (const s of [this.hub, this.cdn]) {
      s.closeAllConnections();
      await new Promise<void>((ok) => s.close(() => ok()));
    }
  }

  /** GETs of a file's bytes (the hub's resolve URL or the CDN), not counting HEADs. */
  fileGets(): SeenRequest[] {
    return this.requests.filter((r) => r.method === 'GET' && (r.server === 'cdn' || r.url.includes('/resolve/')));
  }

  private async onHub(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.requests.push({ server: 'hub', method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    const url = new URL(req.url ?? '/', this.endpoint);
    const parts = url.pathname.split('/').slice(1).map(decodeURIComponent);
    const api = parts[0] === 'api' && parts[1] === 'models';
    const [org, name] = api ? parts.slice(2, 4) : parts.slice(0, 2);
    const id = `${org}/${name}`;
    const repo = this.repos.get(id);
    if (!repo) return json(res, 404, { error: 'Repository not found' }, { 'x-error-code': 'RepoNotFound' });
    if (repo.token !== undefined && req.headers.authorization !== `Bearer ${repo.token}`) {
      return json(res, 401, { error: `Access to model ${id} is restricted. You must have access to it and be authenticated to access it. Please log in.` }, { 'x-error-code': 'GatedRepo' });
    }
    const [verb, rev] = api ? parts.slice(4, 6) : parts.slice(2, 4);
    if (rev !== 'main' && rev !== repo.commit) return json(res, 404, { error: `Invalid rev id: ${rev}` }, { 'x-error-code': 'RevisionNotFound' });
    const files = Object.entries(repo.files);
    if (api && verb === 'revision') return json(res, 200, { _id: 'x', id, sha: repo.commit, private: false, gated: repo.token ? 'manual' : false, downloads: 0, likes: 0, lastModified: '2024-01-01T00:00:00.000Z' });
    if (api && verb === 'tree') {
      const dirs = [...new Set(files.map(([p]) => p).filter((p) => p.includes('/')).map((p) => p.slice(0, p.lastIndexOf('/'))))];
      return json(res, 200, [...dirs.map((p) => ({ type: 'directory', path: p, size: 0, oid: gitOid(Buffer.from(p)) })), ...files.map(([p, f]) => listed(p, f))]);
    }
    if (api && verb === 'paths-info') {
      let body = '';
      for await (const chunk of req) body += chunk;
      const paths: string[] = JSON.parse(body).paths;
      return json(res, 200, files.filter(([p]) => paths.includes(p)).map(([p, f]) => listed(p, f)));
    }
    if (!api && verb === 'resolve') {
      const path = parts.slice(4).join('/');
      const f = repo.files[path];
      if (!f) return json(res, 404, { error: 'Entry not found' }, { 'x-error-code': 'EntryNotFound' });
      const common = { 'x-repo-commit': repo.commit, 'accept-ranges': 'bytes' };
      if (f.lfs) {
        const size = String(f.advertisedBytes ?? f.content.length);
        res.writeHead(302, { ...common, location: `${this.cdnOrigin}/blob/${sha256(f.content)}?sig=1`, 'x-linked-etag': `"${f.advertisedSha256 ?? sha256(f.content)}"`, 'x-linked-size': size, etag: `"${gitOid(Buffer.from(path))}"` });
        return void res.end();
      }
      return this.serveBytes(req, res, f, { ...common, etag: `"${f.advertisedOid ?? gitOid(f.content)}"` });
    }
    json(res, 404, { error: `no route ${url.pathname}` });
  }

  private onCdn(req: IncomingMessage, res: ServerResponse): void {
    this.requests.push({ server: 'cdn', method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    const sha = new URL(req.url ?? '/', this.cdnOrigin).pathname.split('/')[2];
    for (const repo of this.repos.values()) {
      for (const f of Object.values(repo.files)) {
        if (f.lfs && sha256(f.content) === sha) return this.serveBytes(req, res, f, { etag: `"${sha}"` });
      }
    }
    res.writeHead(404).end();
  }

  private serveBytes(req: IncomingMessage, res: ServerResponse, f: FakeFile, headers: Record<string, string>): void {
    const total = f.content.length;
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    const probe = range !== null && range[1] === '0' && range[2] === '0';
    if (range && !(this.ignoreRange && !probe)) {
      const start = Number(range[1]);
      if (start >= total) {
        res.writeHead(416, { ...headers, 'content-range': `bytes */${total}` });
        return void res.end();
      }
      const end = range[2] ? Math.min(Number(range[2]), total - 1) : total - 1;
      res.writeHead(206, { ...headers, 'content-range': `bytes ${start}-${end}/${probe ? (f.advertisedBytes ?? total) : total}`, 'content-length': String(end - start + 1) });
      return void (req.method === 'HEAD' ? res.end() : this.send(res, f.content.subarray(start, end + 1), probe));
    }
    res.writeHead(200, { ...headers, 'content-length': String(total) });
    if (req.method === 'HEAD') return void res.end();
    this.send(res, f.content, false);
  }

  private send(res: ServerResponse, bytes: Buffer, probe: boolean): void {
    const cut = probe ? undefined : this.cutAfterBytes;
    if (cut === undefined) return void res.end(bytes);
    this.cutAfterBytes = undefined;
    res.write(bytes.subarray(0, cut));
    setTimeout(() => res.destroy(), 100);
  }
}
