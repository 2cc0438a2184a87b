// Host imports of the kernels module (the same for the main thread and workers).

export function wasmImports(memory: WebAssembly.Memory): WebAssembly.Imports {
  return {
    env: {
      memory,
      abort: (_msg: number, _file: number, line: number, col: number) => {
        throw new Error(`kernel aborted at ${line}:${col}`);
      },
    },
  };
}
