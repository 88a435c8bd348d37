// SPDX-License-Identifier: MIT
// Keeps C++ exceptions from escaping a Node-API entry point. node-addon-api turns a thrown
// Napi::Error into a JS exception, but any other exception (std::bad_alloc from a huge
// allocation, std::system_error when a thread cannot start) would pass through the C callback
// and end the process. Every function the addon exports runs inside guard(), which turns such
// exceptions into coded JS errors.
#pragma once

#include <napi.h>

#include <exception>
#include <new>
#include <string>
#include <system_error>
#include <utility>

#include "core/error.h"
#include "register.h"

namespace geb::binding {

// Runs `body` and rethrows any exception as a Napi::Error with a code. EngineError keeps its own
// code. A failed allocation or thread start is ERR_GEB_IO, because the machine ran out of a
// resource while the call itself may be valid. Anything else is ERR_GEB_INTERNAL.
template <typename Body>
auto guard(Napi::Env env, Body&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;  // already a JS error (Napi::Error also derives from std::exception, so it goes first)
  } catch (const EngineError& e) {
    throw CodedError(env, error_code_name(e.code()), e.what());
  } catch (const std::bad_alloc&) {
    throw CodedError(env, kErrIo, "out of memory; use smaller inputs, a smaller contextSize or fewer sequences");
  } catch (const std::system_error& e) {
    throw CodedError(env, kErrIo, std::string("a system call failed (") + e.what() +
                                      "); use fewer threads or free memory, then retry");
  } catch (const std::exception& e) {
    throw CodedError(env, kErrInternal, std::string("internal error in geb-cpu: ") + e.what());
  } catch (...) {
    throw CodedError(env, kErrInternal, "internal error in geb-cpu: unknown C++ exception");
  }
}

// A plain callback wrapped in guard(), for Napi::Function::New(env, Guarded<Fn>, name).
template <Napi::Value (*Fn)(const Napi::CallbackInfo&)>
Napi::Value Guarded(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&] { return Fn(info); });
}

}  // namespace geb::binding
