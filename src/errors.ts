/** Errors a user can act on. The CLI prints `message` on one line and exits non-zero. */
export class RocketError extends Error {
  constructor(message: string, readonly code: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** Model directory missing, unreadable or incomplete. */
export class ModelLoadError extends RocketError {
  constructor(message: string) { super(message, 'MODEL_LOAD'); }
}

/** config.json names an architecture this engine does not run. */
export class UnsupportedArchitectureError extends RocketError {
  constructor(message: string) { super(message, 'UNSUPPORTED_ARCHITECTURE'); }
}

/** A safetensors file whose header or offsets are inconsistent with the file. */
export class SafetensorsError extends RocketError {
  constructor(message: string) { super(message, 'SAFETENSORS'); }
}

/** Would need more than wasm32's 4 GiB linear memory. */
export class WasmMemoryError extends RocketError {
  constructor(message: string) { super(message, 'WASM_MEMORY'); }
}

/** Prompt plus requested tokens exceed the model's context. */
export class ContextLengthError extends RocketError {
  constructor(message: string) { super(message, 'CONTEXT_LENGTH'); }
}

/** Bad command-line or API arguments. */
export class UsageError extends RocketError {
  constructor(message: string) { super(message, 'USAGE'); }
}

/** A GGUF file that is malformed, truncated or uses something this engine does not read. */
export class GgufError extends RocketError {
  constructor(message: string) { super(message, 'GGUF'); }
}

/** Downloading a model from the hub failed (network, authorization, integrity). */
export class HubError extends RocketError {
  constructor(message: string) { super(message, 'HUB'); }
}
