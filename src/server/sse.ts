/** Reading a server-sent event stream as the server writes it: one `data: ...` line per event. */

/** Each event's data, in order, until the stream closes. */
export async function* sseData(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const reader = body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += dec.decode(value, { stream: true });
      let i: number;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const event = buf.slice(0, i);
        buf = buf.slice(i + 2);
        if (!event.startsWith('data: ')) throw new Error(`not an SSE data event: ${event.slice(0, 200)}`);
        yield event.slice(6);
      }
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
}
