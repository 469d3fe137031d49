#include "common/clock.h"

#include "common/time.h"

namespace relay::common {
namespace {

class RealClock final : public Clock {
 public:
  int64_t NowUnixMs() const override { return common::NowUnixMs(); }
};

}  // namespace

const Clock& Clock::Real() {
  static const RealClock clock;
  return clock;
}

}  // namespace relay::common
