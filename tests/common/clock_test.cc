#include "common/clock.h"

#include <gtest/gtest.h>

#include "common/time.h"

namespace relay::common {
namespace {

TEST(Clock, RealFollowsTheSystemClock) {
  int64_t before = NowUnixMs();
  int64_t now = Clock::Real().NowUnixMs();
  EXPECT_GE(now, before);
  EXPECT_LE(now, NowUnixMs());
}

TEST(ManualClock, MovesOnlyWhenTold) {
  ManualClock clock(1'700'000'000'999);
  EXPECT_EQ(clock.NowUnixMs(), 1'700'000'000'999);
  EXPECT_EQ(clock.NowUnixSeconds(), 1'700'000'000);
  clock.Advance(std::chrono::milliseconds(1));
  EXPECT_EQ(clock.NowUnixSeconds(), 1'700'000'001);
  clock.Set(0);
  EXPECT_EQ(clock.NowUnixMs(), 0);
}

}  // namespace
}  // namespace relay::common
