/**
 * The proto3 JSON mapping as etcd's gateway speaks it (grpc-gateway's JSONPb with the original
 * proto field names), between JSON and the objects the service handlers take and return (the
 * proto-loader shapes of ../proto.ts), driven by protobufjs reflection of the same .proto files:
 * no message is described twice.
 *
 * Out (responses): original field names (`range_end`, `cluster_id`); 64-bit integers as decimal
 * strings; bytes as standard base64; enums by name; fields at their default (0, "", false, empty,
 * unset message) left out, as etcd leaves them out; a oneof member is written whenever it is set.
 *
 * In (requests): the original name or the lowerCamelCase JSON name; 64-bit integers as strings
 * or numbers; bytes as base64 (standard or URL alphabet, padding optional); enums by name or
 * number; `null` as absent; unknown fields ignored (etcd 3.6's DiscardUnknown). The result is
 * exactly what proto-loader would decode from the same message in protobuf: every non-oneof
 * field present (int64 "0", bytes an empty Buffer, a message null, a list []), a oneof's set
 * member named by its virtual field (`request: 'requestPut'`).
 */

import { createRequire } from 'node:module';
import type { Enum, Field, Root, Type } from 'protobufjs';
import { assert } from '../../util/assert.js';
import { PROTO_DIR, PROTO_FILES } from '../proto.js';

type Protobufjs = typeof import('protobufjs');
let protobufjs: Protobufjs | null = null;
/** protobufjs, required on first use (CommonJS): a member starts without it (proto.ts). */
function pb(): Protobufjs {
  protobufjs ??= createRequire(import.meta.url)('protobufjs') as Protobufjs;
  return protobufjs;
}

/** Nesting the mapping follows (protobufjs's own decode limit); deeper input is refused. */
export const JSON_NESTING_MAX = 100;

/** A request that does not map onto its message (HTTP 400, gRPC INVALID_ARGUMENT). */
export class JsonMappingError extends Error {
  override readonly name = 'JsonMappingError';
}

export type JsonValue =
  | null
  | boolean
  | number
  | string
  | JsonValue[]
  | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

/** Field names for output: etcd's (`orig`, the default) or lowerCamelCase (`json`). */
export type JsonNames = 'orig' | 'json';

const INT64_TYPES = new Set(['int64', 'sint64', 'sfixed64']);
const UINT64_TYPES = new Set(['uint64', 'fixed64']);
const INT32_TYPES = new Set(['int32', 'sint32', 'sfixed32']);
const UINT32_TYPES = new Set(['uint32', 'fixed32']);
const FLOAT_TYPES = new Set(['double', 'float']);

/** protoc's json_name: underscores dropped, the letter after each one upper-cased. */
export function jsonNameOf(protoName: string): string {
  return protoName.replace(/_+([^_])/g, (_m, c: string) => c.toUpperCase()).replace(/_+$/, '');
}

/** The key proto-loader (protobufjs with keepCase false) gives a field or oneof. */
export function objectKeyOf(protoName: string): string {
  return pb().util.camelCase(protoName);
}

/** One field, with the three names it goes by. */
interface FieldInfo {
  readonly field: Field;
  readonly origName: string;
  readonly jsonName: string;
  readonly key: string;
  /** The oneof's object key (`request`) when the field is part of one. */
  readonly oneofKey: string | null;
}

interface TypeInfo {
  readonly type: Type;
  readonly fields: readonly FieldInfo[];
  /** Either JSON name (original or lowerCamelCase) to its field. */
  readonly byJsonName: ReadonlyMap<string, FieldInfo>;
}

let cachedRoot: Root | null = null;

/** etcd's .proto files, loaded with their original field names (the objects' keys are derived). */
export function loadJsonRoot(): Root {
  if (cachedRoot !== null) return cachedRoot;
  const root = new (pb().Root)();
  root.resolvePath = (_origin, target) =>
    target.startsWith('/') ? target : `${PROTO_DIR}${target}`;
  root.loadSync([...PROTO_FILES], { keepCase: true });
  root.resolveAll();
  cachedRoot = root;
  return root;
}

export class ProtoJson {
  private readonly infos = new Map<Type, TypeInfo>();

  private loadedRoot: Root | null;

  /** Without `root`, etcd's protos are loaded on first use (loadJsonRoot). */
  constructor(root?: Root) {
    this.loadedRoot = root ?? null;
  }

  private get root(): Root {
    this.loadedRoot ??= loadJsonRoot();
    return this.loadedRoot;
  }

  /** The message type of a service method's request and response ("etcdserverpb.KV", "Range"). */
  methodTypes(service: string, method: string): { request: Type; response: Type } {
    const m = this.root.lookupService(service).methods[method];
    assert(m !== undefined, `${service}/${method}: no such method`);
    m.resolve();
    assert(m.resolvedRequestType !== null && m.resolvedResponseType !== null);
    return { request: m.resolvedRequestType, response: m.resolvedResponseType };
  }

  lookupType(name: string): Type {
    return this.root.lookupType(name);
  }

  /** A JSON value (already parsed) as the handler's request object. */
  fromJson(type: Type, json: unknown): Record<string, unknown> {
    if (json === null || json === undefined) return this.readMessage(type, {}, 0);
    if (typeof json !== 'object' || Array.isArray(json)) {
      throw new JsonMappingError(`${type.fullName.slice(1)}: expected a JSON object`);
    }
    return this.readMessage(type, json as Record<string, unknown>, 0);
  }

  /** A handler's response object as JSON, default-valued fields left out. */
  toJson(type: Type, message: unknown, names: JsonNames = 'orig'): JsonObject {
    return this.writeMessage(type, message as Record<string, unknown>, names, 0);
  }

  private info(type: Type): TypeInfo {
    let info = this.infos.get(type);
    if (info !== undefined) return info;
    const fields: FieldInfo[] = type.fieldsArray.map((field) => {
      field.resolve();
      return {
        field,
        origName: field.name,
        jsonName: jsonNameOf(field.name),
        key: objectKeyOf(field.name),
        oneofKey: field.partOf === null ? null : objectKeyOf(field.partOf.name),
      };
    });
    const byJsonName = new Map<string, FieldInfo>();
    for (const f of fields) {
      byJsonName.set(f.origName, f);
      byJsonName.set(f.jsonName, f);
    }
    info = { type, fields, byJsonName };
    this.infos.set(type, info);
    return info;
  }

  // -------------------------------------------------------------------------------------------
  // In.

  private readMessage(
    type: Type,
    json: Record<string, unknown>,
    depth: number,
  ): Record<string, unknown> {
    if (depth > JSON_NESTING_MAX) throw new JsonMappingError('maximum nesting depth exceeded');
    const info = this.info(type);
    const out: Record<string, unknown> = {};
    for (const f of info.fields) {
      if (f.oneofKey === null) out[f.key] = defaultOf(f.field);
    }
    const seen = new Set<FieldInfo>();
    for (const [name, value] of Object.entries(json)) {
      const f = info.byJsonName.get(name);
      if (f === undefined || value === null) continue; // unknown: ignored; null: absent
      if (seen.has(f)) throw new JsonMappingError(`duplicate field "${name}"`);
      seen.add(f);
      const where = `${type.name}.${f.origName}`;
      if (f.oneofKey !== null) {
        const other = out[f.oneofKey];
        if (other !== undefined) {
          throw new JsonMappingError(`${where}: oneof field already set (${String(other)})`);
        }
        out[f.oneofKey] = f.key;
      }
      out[f.key] = this.readField(f.field, value, where, depth);
    }
    return out;
  }

  private readField(field: Field, value: unknown, where: string, depth: number): unknown {
    if (field.map) throw new JsonMappingError(`${where}: map fields are not supported`);
    if (!field.repeated) return this.readSingle(field, value, where, depth);
    if (!Array.isArray(value)) throw new JsonMappingError(`${where}: expected a JSON array`);
    return value.map((item: unknown) => {
      if (item === null) throw new JsonMappingError(`${where}: null in a list`);
      return this.readSingle(field, item, where, depth);
    });
  }

  private readSingle(field: Field, value: unknown, where: string, depth: number): unknown {
    const resolved = field.resolvedType;
    if (resolved instanceof pb().Type) {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) {
        throw new JsonMappingError(`${where}: expected a JSON object`);
      }
      return this.readMessage(resolved, value as Record<string, unknown>, depth + 1);
    }
    if (resolved instanceof pb().Enum) return readEnum(resolved, value, where);
    return readScalar(field.type, value, where);
  }

  // -------------------------------------------------------------------------------------------
  // Out.

  private writeMessage(
    type: Type,
    message: Record<string, unknown>,
    names: JsonNames,
    depth: number,
  ): JsonObject {
    assert(depth <= JSON_NESTING_MAX, 'response nesting');
    const out: JsonObject = {};
    for (const f of this.info(type).fields) {
      const value = message[f.key];
      if (value === undefined || value === null) continue;
      const name = names === 'orig' ? f.origName : f.jsonName;
      const field = f.field;
      if (field.repeated) {
        const list = value as readonly unknown[];
        if (list.length === 0) continue;
        out[name] = list.map((item) => this.writeSingle(field, item, names, depth));
        continue;
      }
      const written = this.writeSingle(field, value, names, depth);
      // A set oneof member is written even at its default; other fields only when not default.
      if (f.oneofKey === null && isDefaultJson(field, written)) continue;
      out[name] = written;
    }
    return out;
  }

  private writeSingle(field: Field, value: unknown, names: JsonNames, depth: number): JsonValue {
    const resolved = field.resolvedType;
    if (resolved instanceof pb().Type) {
      return this.writeMessage(resolved, value as Record<string, unknown>, names, depth + 1);
    }
    if (resolved instanceof pb().Enum) {
      if (typeof value === 'string') return value;
      const n = Number(value);
      return resolved.valuesById[n] ?? n;
    }
    return writeScalar(field.type, value);
  }
}

/** The value proto-loader (defaults: true) gives a field absent from the message. */
function defaultOf(field: Field): unknown {
  if (field.repeated) return [];
  const resolved = field.resolvedType;
  if (resolved instanceof pb().Type) return null;
  if (resolved instanceof pb().Enum) return firstEnumValue(resolved);
  if (INT64_TYPES.has(field.type) || UINT64_TYPES.has(field.type)) return '0';
  if (field.type === 'bool') return false;
  if (field.type === 'string') return '';
  if (field.type === 'bytes') return Buffer.alloc(0);
  return 0;
}

function firstEnumValue(e: Enum): number {
  const first = Object.values(e.values)[0];
  return first ?? 0;
}

function isDefaultJson(field: Field, written: JsonValue): boolean {
  if (field.resolvedType instanceof pb().Type) return false;
  if (field.resolvedType instanceof pb().Enum) {
    return written === field.resolvedType.valuesById[0] || written === 0;
  }
  if (INT64_TYPES.has(field.type) || UINT64_TYPES.has(field.type)) return written === '0';
  if (field.type === 'string' || field.type === 'bytes') return written === '';
  return written === 0 || written === false;
}

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;
const INTEGER_TEXT = /^-?\d+$/;
/** Standard or URL-safe base64, padding optional (protojson accepts both). */
const BASE64_TEXT = /^[A-Za-z0-9+/_-]*={0,2}$/;

function readEnum(e: Enum, value: unknown, where: string): number {
  if (typeof value === 'string') {
    const n = e.values[value];
    if (n === undefined) throw new JsonMappingError(`${where}: invalid value for enum: "${value}"`);
    return n;
  }
  if (typeof value === 'number' && Number.isInteger(value) && Math.abs(value) <= 2 ** 31) {
    return value;
  }
  throw new JsonMappingError(`${where}: invalid value for enum: ${JSON.stringify(value)}`);
}

function integerOf(value: unknown, where: string): bigint {
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) throw new JsonMappingError(`${where}: not an integer: ${value}`);
    return BigInt(value);
  }
  if (typeof value === 'string' && INTEGER_TEXT.test(value)) return BigInt(value);
  throw new JsonMappingError(`${where}: invalid integer: ${JSON.stringify(value)}`);
}

function readScalar(type: string, value: unknown, where: string): unknown {
  if (INT64_TYPES.has(type) || UINT64_TYPES.has(type)) {
    const n = integerOf(value, where);
    const [min, max] = INT64_TYPES.has(type) ? [INT64_MIN, INT64_MAX] : [0n, UINT64_MAX];
    if (n < min || n > max) throw new JsonMappingError(`${where}: out of range: ${n}`);
    return n.toString();
  }
  if (INT32_TYPES.has(type) || UINT32_TYPES.has(type)) {
    const n = integerOf(value, where);
    const [min, max] = INT32_TYPES.has(type)
      ? [-(2n ** 31n), 2n ** 31n - 1n]
      : [0n, 2n ** 32n - 1n];
    if (n < min || n > max) throw new JsonMappingError(`${where}: out of range: ${n}`);
    return Number(n);
  }
  if (FLOAT_TYPES.has(type)) {
    if (typeof value === 'number') return value;
    if (value === 'NaN') return Number.NaN;
    if (value === 'Infinity') return Number.POSITIVE_INFINITY;
    if (value === '-Infinity') return Number.NEGATIVE_INFINITY;
    if (typeof value === 'string' && value.trim() !== '' && Number.isFinite(Number(value))) {
      return Number(value);
    }
    throw new JsonMappingError(`${where}: invalid number: ${JSON.stringify(value)}`);
  }
  switch (type) {
    case 'bool':
      if (typeof value !== 'boolean') {
        throw new JsonMappingError(`${where}: invalid bool: ${JSON.stringify(value)}`);
      }
      return value;
    case 'string':
      if (typeof value !== 'string') {
        throw new JsonMappingError(`${where}: invalid string: ${JSON.stringify(value)}`);
      }
      return value;
    case 'bytes':
      if (typeof value !== 'string' || !BASE64_TEXT.test(value)) {
        throw new JsonMappingError(`${where}: invalid base64: ${JSON.stringify(value)}`);
      }
      return Buffer.from(value, 'base64');
  }
  throw new JsonMappingError(`${where}: unsupported field type ${type}`);
}

function writeScalar(type: string, value: unknown): JsonValue {
  if (INT64_TYPES.has(type)) return BigInt.asIntN(64, bigintOf(value)).toString();
  if (UINT64_TYPES.has(type)) return BigInt.asUintN(64, bigintOf(value)).toString();
  if (INT32_TYPES.has(type)) return Number(value) | 0;
  if (UINT32_TYPES.has(type)) return Number(value) >>> 0;
  if (FLOAT_TYPES.has(type)) {
    const n = Number(value);
    if (Number.isNaN(n)) return 'NaN';
    if (n === Number.POSITIVE_INFINITY) return 'Infinity';
    if (n === Number.NEGATIVE_INFINITY) return '-Infinity';
    return n;
  }
  switch (type) {
    case 'bool':
      return value === true;
    case 'string':
      return String(value);
    case 'bytes':
      // A string is taken as base64 already, as protobufjs's encoder takes it.
      if (typeof value === 'string') return value;
      return bytesView(value as Uint8Array).toString('base64');
  }
  assert(false, `unsupported field type ${type}`);
}

function bigintOf(value: unknown): bigint {
  if (typeof value === 'bigint') return value;
  if (typeof value === 'number') return BigInt(Math.trunc(value));
  if (typeof value === 'string') return BigInt(value);
  // A Long (protobufjs's 64-bit value): low and high 32 bits.
  const long = value as { low: number; high: number };
  return (BigInt(long.high >>> 0) << 32n) | BigInt(long.low >>> 0);
}

function bytesView(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
}
