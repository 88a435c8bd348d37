// SPDX-License-Identifier: MIT
// Helpers that read plain JS values into C++ on the main thread, throwing a coded
// ERR_GEB_INVALID_ARGUMENT error that names the offending field. The TS layer validates first;
// these checks keep a direct caller of the addon from reaching undefined behaviour.
#pragma once

#include <napi.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "register.h"

namespace geb::binding {

inline Napi::Error invalid_argument(Napi::Env env, const std::string& message) {
  return CodedError(env, kErrInvalidArgument, message);
}

// An integer-valued number in [lo, hi].
inline int64_t get_integer(Napi::Env env, Napi::Value value, const std::string& field, int64_t lo, int64_t hi) {
  if (!value.IsNumber()) throw invalid_argument(env, field + " must be a number");
  const double d = value.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::floor(d) != d || d < static_cast<double>(lo) || d > static_cast<double>(hi)) {
    throw invalid_argument(env, field + " must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                                    "], got " + value.ToString().Utf8Value());
  }
  return static_cast<int64_t>(d);
}

inline int get_int(Napi::Env env, Napi::Value value, const std::string& field, int lo = 0, int hi = INT32_MAX) {
  return static_cast<int>(get_integer(env, value, field, lo, hi));
}

inline double get_number(Napi::Env env, Napi::Value value, const std::string& field) {
  if (!value.IsNumber()) throw invalid_argument(env, field + " must be a number");
  const double d = value.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d)) throw invalid_argument(env, field + " must be finite");
  return d;
}

inline std::string get_string(Napi::Env env, Napi::Value value, const std::string& field) {
  if (!value.IsString()) throw invalid_argument(env, field + " must be a string");
  return value.As<Napi::String>().Utf8Value();
}

inline Napi::Object get_object(Napi::Env env, Napi::Value value, const std::string& field) {
  if (!value.IsObject() || value.IsArray()) throw invalid_argument(env, field + " must be an object");
  return value.As<Napi::Object>();
}

inline Napi::Array get_array(Napi::Env env, Napi::Value value, const std::string& field) {
  if (!value.IsArray()) throw invalid_argument(env, field + " must be an array");
  return value.As<Napi::Array>();
}

template <typename T>
T get_typed_array(Napi::Env env, Napi::Value value, napi_typedarray_type type, const char* type_name, const std::string& field) {
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != type) {
    throw invalid_argument(env, field + " must be a " + type_name);
  }
  return value.As<T>();
}

inline Napi::Float32Array get_f32(Napi::Env env, Napi::Value value, const std::string& field) {
  return get_typed_array<Napi::Float32Array>(env, value, napi_float32_array, "Float32Array", field);
}

inline Napi::Int32Array get_i32(Napi::Env env, Napi::Value value, const std::string& field) {
  return get_typed_array<Napi::Int32Array>(env, value, napi_int32_array, "Int32Array", field);
}

inline Napi::Uint8Array get_u8(Napi::Env env, Napi::Value value, const std::string& field) {
  return get_typed_array<Napi::Uint8Array>(env, value, napi_uint8_array, "Uint8Array", field);
}

}  // namespace geb::binding
