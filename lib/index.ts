// Public entry point of the geb-cpu package: model loading, generation and conversion, the
// tokenizer, CPU information and the typed errors. Everything else under lib/ is internal.

export { loadModel, Model } from "./model.js";
export { demoModelPath } from "./demo-model.js";
export type {
  ChatFormatName,
  ChatMessage,
  ChatOptions,
  ChatRole,
  FinishReason,
  GenerateOptions,
  GenerateResult,
  GenerateStream,
  GenerateTimings,
  LoadModelOptions,
  LoadProgress,
  ModelInfo,
  Prompt,
  SamplingOptions,
  StopOptions,
} from "./model.js";
export { convertModel } from "./model/convert.js";
export type { ConvertOptions, ConvertResult, GebOutputArchitecture } from "./model/convert.js";
export { loadTokenizer } from "./tokenizer/index.js";
export type { Tokenizer } from "./tokenizer/index.js";
export { cpuInfo } from "./native.js";
export {
  AbortError,
  ContextOverflowError,
  CpuFeatureError,
  DisposedError,
  GebError,
  InternalError,
  InvalidArgumentError,
  IoError,
  ModelFormatError,
  NativeLoadError,
  UnsupportedError,
} from "./errors.js";
export type { GebErrorCode, GebErrorDetails } from "./errors.js";
