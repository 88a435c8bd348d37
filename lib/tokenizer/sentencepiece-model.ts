// Parser for SentencePiece `.model` files (a serialized `ModelProto`): the pieces with their
// scores and types, and the trainer and normalizer settings that change how text is encoded.
// Field numbers follow sentencepiece_model.proto; fields this package does not use are skipped.

import { ModelFormatError } from "../errors.js";
import { fieldBool, fieldFloat, fieldInt32, fieldString, ProtoReader, WireType, type ProtoField } from "./protobuf.js";

/** `ModelProto.SentencePiece.Type` values. A piece without a type field is NORMAL. */
export const PieceType = {
  NORMAL: 1,
  UNKNOWN: 2,
  CONTROL: 3,
  USER_DEFINED: 4,
  UNUSED: 5,
  BYTE: 6,
} as const;

/** `TrainerSpec.ModelType` values. */
export const ModelType = {
  UNIGRAM: 1,
  BPE: 2,
  WORD: 3,
  CHAR: 4,
} as const;

/** The trainer settings that matter for encoding and decoding. */
export interface TrainerSpec {
  /** One of `ModelType`; UNIGRAM when the field is absent. */
  modelType: number;
  /** Vocabulary size the trainer was asked for (may differ from the real piece count). */
  vocabSize: number;
  byteFallback: boolean;
  splitByWhitespace: boolean;
  splitDigits: boolean;
  treatWhitespaceAsSuffix: boolean;
  allowWhitespaceOnlyPieces: boolean;
  unkId: number;
  bosId: number;
  eosId: number;
  /** -1 when the model has no padding piece. */
  padId: number;
  /** Text that decoding writes for the unknown piece (default " ⁇ "). */
  unkSurface: string;
}

/** The normalizer settings. */
export interface NormalizerSpec {
  name: string;
  /** Darts double-array trie plus replacement strings; empty for identity normalization. */
  precompiledCharsmap: Uint8Array;
  addDummyPrefix: boolean;
  removeExtraWhitespaces: boolean;
  escapeWhitespaces: boolean;
}

/** A parsed SentencePiece model. */
export interface SentencePieceModel {
  pieces: string[];
  scores: Float32Array;
  /** `PieceType` of each piece. */
  types: Uint8Array;
  trainerSpec: TrainerSpec;
  normalizerSpec: NormalizerSpec;
  /** The denormalizer, when the model has one (this package rejects such models at load). */
  denormalizerSpec?: NormalizerSpec;
}

function expectWireType(field: ProtoField, wireType: number, message: string): void {
  if (field.wireType !== wireType) {
    throw new ModelFormatError(
      `Invalid SentencePiece model: field ${field.fieldNumber} of ${message} has wire type ${field.wireType}, expected ${wireType}.`,
    );
  }
}

function parsePiece(bytes: Uint8Array, start: number, end: number): { piece: string; score: number; type: number } {
  const reader = new ProtoReader(bytes, start, end, "SentencePiece piece");
  let piece = "";
  let score = 0;
  let type: number = PieceType.NORMAL;
  while (!reader.done()) {
    const field = reader.next();
    if (field.fieldNumber === 1) {
      expectWireType(field, WireType.LENGTH_DELIMITED, "SentencePiece");
      piece = fieldString(bytes, field);
    } else if (field.fieldNumber === 2) {
      expectWireType(field, WireType.FIXED32, "SentencePiece");
      score = fieldFloat(bytes, field);
    } else if (field.fieldNumber === 3) {
      expectWireType(field, WireType.VARINT, "SentencePiece");
      type = fieldInt32(field);
    }
  }
  if (type < PieceType.NORMAL || type > PieceType.BYTE) {
    throw new ModelFormatError(`Invalid SentencePiece model: piece "${piece}" has unknown type ${type}.`);
  }
  return { piece, score, type };
}

function parseTrainerSpec(bytes: Uint8Array, start: number, end: number): TrainerSpec {
  // Defaults are the proto2 defaults of sentencepiece_model.proto.
  const spec: TrainerSpec = {
    modelType: ModelType.UNIGRAM,
    vocabSize: 8000,
    byteFallback: false,
    splitByWhitespace: true,
    splitDigits: false,
    treatWhitespaceAsSuffix: false,
    allowWhitespaceOnlyPieces: false,
    unkId: 0,
    bosId: 1,
    eosId: 2,
    padId: -1,
    unkSurface: " \u2047 ",
  };
  const reader = new ProtoReader(bytes, start, end, "SentencePiece trainer_spec");
  while (!reader.done()) {
    const field = reader.next();
    const isVarint = field.wireType === WireType.VARINT;
    switch (field.fieldNumber) {
      case 3:
        if (isVarint) spec.modelType = fieldInt32(field);
        break;
      case 4:
        if (isVarint) spec.vocabSize = fieldInt32(field);
        break;
      case 22:
        if (isVarint) spec.splitByWhitespace = fieldBool(field);
        break;
      case 24:
        if (isVarint) spec.treatWhitespaceAsSuffix = fieldBool(field);
        break;
      case 25:
        if (isVarint) spec.splitDigits = fieldBool(field);
        break;
      case 26:
        if (isVarint) spec.allowWhitespaceOnlyPieces = fieldBool(field);
        break;
      case 35:
        if (isVarint) spec.byteFallback = fieldBool(field);
        break;
      case 40:
        if (isVarint) spec.unkId = fieldInt32(field);
        break;
      case 41:
        if (isVarint) spec.bosId = fieldInt32(field);
        break;
      case 42:
        if (isVarint) spec.eosId = fieldInt32(field);
        break;
      case 43:
        if (isVarint) spec.padId = fieldInt32(field);
        break;
      case 44:
        if (field.wireType === WireType.LENGTH_DELIMITED) spec.unkSurface = fieldString(bytes, field);
        break;
      default:
        break;
    }
  }
  return spec;
}

function parseNormalizerSpec(bytes: Uint8Array, start: number, end: number): NormalizerSpec {
  const spec: NormalizerSpec = {
    name: "",
    precompiledCharsmap: new Uint8Array(0),
    addDummyPrefix: true,
    removeExtraWhitespaces: true,
    escapeWhitespaces: true,
  };
  const reader = new ProtoReader(bytes, start, end, "SentencePiece normalizer_spec");
  while (!reader.done()) {
    const field = reader.next();
    const isVarint = field.wireType === WireType.VARINT;
    const isBytes = field.wireType === WireType.LENGTH_DELIMITED;
    if (field.fieldNumber === 1 && isBytes) spec.name = fieldString(bytes, field);
    else if (field.fieldNumber === 2 && isBytes) spec.precompiledCharsmap = bytes.slice(field.start, field.end);
    else if (field.fieldNumber === 3 && isVarint) spec.addDummyPrefix = fieldBool(field);
    else if (field.fieldNumber === 4 && isVarint) spec.removeExtraWhitespaces = fieldBool(field);
    else if (field.fieldNumber === 5 && isVarint) spec.escapeWhitespaces = fieldBool(field);
  }
  return spec;
}

/**
 * Parses a serialized SentencePiece `ModelProto`.
 * Throws ModelFormatError (`ERR_GEB_MODEL_FORMAT`) on malformed bytes or a model without pieces.
 */
export function parseSentencePieceModel(bytes: Uint8Array): SentencePieceModel {
  const pieceList: { piece: string; score: number; type: number }[] = [];
  let trainerSpec: TrainerSpec | undefined;
  let normalizerSpec: NormalizerSpec | undefined;
  let denormalizerSpec: NormalizerSpec | undefined;

  const reader = new ProtoReader(bytes, 0, bytes.length, "SentencePiece model");
  while (!reader.done()) {
    const field = reader.next();
    if (field.fieldNumber === 1) {
      expectWireType(field, WireType.LENGTH_DELIMITED, "ModelProto");
      pieceList.push(parsePiece(bytes, field.start, field.end));
    } else if (field.fieldNumber === 2) {
      expectWireType(field, WireType.LENGTH_DELIMITED, "ModelProto");
      trainerSpec = parseTrainerSpec(bytes, field.start, field.end);
    } else if (field.fieldNumber === 3) {
      expectWireType(field, WireType.LENGTH_DELIMITED, "ModelProto");
      normalizerSpec = parseNormalizerSpec(bytes, field.start, field.end);
    } else if (field.fieldNumber === 5) {
      expectWireType(field, WireType.LENGTH_DELIMITED, "ModelProto");
      denormalizerSpec = parseNormalizerSpec(bytes, field.start, field.end);
    }
  }
  if (pieceList.length === 0) {
    throw new ModelFormatError("Invalid SentencePiece model: it has no pieces. Check that the file is a SentencePiece .model file.");
  }

  const pieces = pieceList.map((p) => p.piece);
  const scores = Float32Array.from(pieceList, (p) => p.score);
  const types = Uint8Array.from(pieceList, (p) => p.type);
  const model: SentencePieceModel = {
    pieces,
    scores,
    types,
    trainerSpec: trainerSpec ?? parseTrainerSpec(new Uint8Array(0), 0, 0),
    normalizerSpec: normalizerSpec ?? parseNormalizerSpec(new Uint8Array(0), 0, 0),
  };
  if (denormalizerSpec !== undefined) model.denormalizerSpec = denormalizerSpec;
  return model;
}
