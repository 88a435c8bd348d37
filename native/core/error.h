// Exceptions of the native engine. Each carries one of the stable codes of lib/errors.ts, so the
// binding can turn it into a JS error with a `code` property and the TS layer into a typed class.
#pragma once

#include <stdexcept>
#include <string>

namespace geb {

enum class ErrorCode : int {
  InvalidArgument,  // ERR_GEB_INVALID_ARGUMENT
  ModelFormat,      // ERR_GEB_MODEL_FORMAT
  Unsupported,      // ERR_GEB_UNSUPPORTED
  ContextOverflow,  // ERR_GEB_CONTEXT_OVERFLOW
  Aborted,          // ERR_GEB_ABORTED
  Disposed,         // ERR_GEB_DISPOSED
  Io,               // ERR_GEB_IO
  Internal,         // ERR_GEB_INTERNAL
};

// Returns the code string of lib/errors.ts, such as "ERR_GEB_MODEL_FORMAT".
inline const char* error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::InvalidArgument: return "ERR_GEB_INVALID_ARGUMENT";
    case ErrorCode::ModelFormat: return "ERR_GEB_MODEL_FORMAT";
    case ErrorCode::Unsupported: return "ERR_GEB_UNSUPPORTED";
    case ErrorCode::ContextOverflow: return "ERR_GEB_CONTEXT_OVERFLOW";
    case ErrorCode::Aborted: return "ERR_GEB_ABORTED";
    case ErrorCode::Disposed: return "ERR_GEB_DISPOSED";
    case ErrorCode::Io: return "ERR_GEB_IO";
    case ErrorCode::Internal: return "ERR_GEB_INTERNAL";
  }
  return "ERR_GEB_INTERNAL";
}

class EngineError : public std::runtime_error {
 public:
  EngineError(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

}  // namespace geb
