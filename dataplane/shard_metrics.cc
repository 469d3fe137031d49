#include "dataplane/shard_metrics.h"

namespace relay::dataplane {

const char* CloseReasonName(CloseReason reason) {
  switch (reason) {
    case CloseReason::kClient:
      return "client";
    case CloseReason::kServer:
      return "server";
    case CloseReason::kSlowConsumer:
      return "slow_consumer";
    case CloseReason::kViolation:
      return "violation";
    case CloseReason::kCount:
      break;
  }
  return "unknown";
}

size_t CloseCodeIndex(int code) {
  if (code == kNoCloseCode) return kCountedCloseCodes.size() + 1;
  for (size_t i = 0; i < kCountedCloseCodes.size(); ++i) {
    if (kCountedCloseCodes[i] == code) return i;
  }
  return kCountedCloseCodes.size();
}

std::string CloseCodeLabel(size_t index) {
  if (index < kCountedCloseCodes.size()) return std::to_string(kCountedCloseCodes[index]);
  return index == kCountedCloseCodes.size() ? "other" : "none";
}

}  // namespace relay::dataplane
