#include "common/json.h"

#include <gtest/gtest.h>
#include <simdjson.h>

#include "common/frames.h"

namespace relay::common {
namespace {

TEST(Json, EscapesAndRoundTrips) {
  std::string nasty = std::string("q\"b\\n\nt\t") + '\x01' + "é";
  JsonWriter w;
  w.BeginObject().Key("s").String(nasty).Key("n").Int(-5).Key("b").Bool(true).Key("a");
  w.BeginArray().Uint(1).Null().EndArray().EndObject();
  EXPECT_NE(w.str().find("\\u0001"), std::string::npos);
  simdjson::dom::parser p;
  simdjson::dom::element doc;
  ASSERT_EQ(p.parse(w.str()).get(doc), simdjson::SUCCESS);
  std::string_view s;
  ASSERT_EQ(doc["s"].get(s), simdjson::SUCCESS);
  EXPECT_EQ(s, nasty);
  int64_t n = 0;
  ASSERT_EQ(doc["n"].get(n), simdjson::SUCCESS);
  EXPECT_EQ(n, -5);
}

TEST(Frames, ShapesRealClientsRelyOn) {
  EXPECT_EQ(RenderEvent("e", "c", "{\"id\":7}"),
            R"({"event":"e","channel":"c","data":"{\"id\":7}"})");
  EXPECT_EQ(RenderEvent("client-x", "presence-r", R"({"a":1})", true, "u1"),
            R"({"event":"client-x","channel":"presence-r","data":{"a":1},"user_id":"u1"})");
  EXPECT_EQ(
      RenderError(4001, "Application does not exist"),
      R"({"event":"pusher:error","data":{"code":4001,"message":"Application does not exist"}})");
  EXPECT_EQ(RenderError(std::nullopt, "x"),
            R"({"event":"pusher:error","data":{"code":null,"message":"x"}})");
  EXPECT_EQ(
      RenderSubscriptionError("private-a", "AuthError", "no", 401),
      R"({"event":"pusher:subscription_error","channel":"private-a","data":{"type":"AuthError","error":"no","status":401}})");
}

}  // namespace
}  // namespace relay::common
