// FixedWindow and the plans' daily quotas (limiter.h), with the time passed in.
#include "controlplane/limiter.h"

#include <gtest/gtest.h>

namespace relay::controlplane {
namespace {

TEST(PlanDailyQuota, KnownPlansAndUnlimitedOtherwise) {
  EXPECT_EQ(PlanDailyQuota("free"), 200000u);
  EXPECT_EQ(PlanDailyQuota("startup"), 1000000u);
  EXPECT_EQ(PlanDailyQuota("pro"), 10000000u);
  EXPECT_EQ(PlanDailyQuota("business"), 100000000u);
  EXPECT_EQ(PlanDailyQuota("default"), 0u);
  EXPECT_EQ(PlanDailyQuota("unlimited"), 0u);
  EXPECT_EQ(PlanDailyQuota(""), 0u);
}

TEST(FixedWindow, CountsCostUpToTheLimitAndReportsIt) {
  FixedWindow w;
  RateInfo info;
  const int64_t now = 1'000'020;  // 20 s into a minute window that starts at 1'000'000
  EXPECT_TRUE(w.Hit("ip", 5, 60, 3, now, &info));
  EXPECT_TRUE(info.present);
  EXPECT_EQ(info.limit, 5u);
  EXPECT_EQ(info.remaining, 2u);
  EXPECT_EQ(info.reset_unix_s, 1'000'020 - (1'000'020 % 60) + 60);
  // A hit that does not fit is refused whole and uses nothing.
  EXPECT_FALSE(w.Hit("ip", 5, 60, 3, now, &info));
  EXPECT_EQ(info.remaining, 2u);
  EXPECT_TRUE(w.Hit("ip", 5, 60, 2, now + 1, &info));
  EXPECT_EQ(info.remaining, 0u);
  EXPECT_FALSE(w.Hit("ip", 5, 60, 1, now + 2, nullptr));
  // Keys are independent.
  EXPECT_TRUE(w.Hit("other", 5, 60, 5, now, nullptr));
}

TEST(FixedWindow, ANewWindowStartsAfresh) {
  FixedWindow w;
  RateInfo info;
  const int64_t start = 6000;  // a multiple of 60
  EXPECT_TRUE(w.Hit("app", 1, 60, 1, start + 59, &info));
  EXPECT_FALSE(w.Hit("app", 1, 60, 1, start + 59, &info));
  EXPECT_TRUE(w.Hit("app", 1, 60, 1, start + 60, &info));
  EXPECT_EQ(info.reset_unix_s, start + 120);
  // After a long idle time (the map is swept) the key starts afresh too.
  EXPECT_TRUE(w.Hit("app", 1, 60, 1, start + 10'000, &info));
  EXPECT_EQ(info.remaining, 0u);
}

TEST(FixedWindow, ACostAboveTheLimitNeverFits) {
  FixedWindow w;
  EXPECT_FALSE(w.Hit("app", 2, 1, 3, 100, nullptr));
  EXPECT_TRUE(w.Hit("app", 2, 1, 2, 100, nullptr));
}

}  // namespace
}  // namespace relay::controlplane
