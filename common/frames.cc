#include "common/frames.h"

#include "common/json.h"

namespace relay::common {

std::string RenderEvent(std::string_view event, std::string_view channel, std::string_view data,
                        bool data_is_json, std::string_view user_id) {
  JsonWriter w;
  w.BeginObject().Key("event").String(event);
  if (!channel.empty()) w.Key("channel").String(channel);
  w.Key("data");
  if (data_is_json) {
    w.Raw(data);
  } else {
    w.String(data);
  }
  if (!user_id.empty()) w.Key("user_id").String(user_id);
  w.EndObject();
  return w.Take();
}

std::string RenderError(std::optional<int> code, std::string_view message) {
  JsonWriter w;
  w.BeginObject().Key("event").String("pusher:error").Key("data").BeginObject().Key("code");
  if (code) {
    w.Int(*code);
  } else {
    w.Null();
  }
  w.Key("message").String(message).EndObject().EndObject();
  return w.Take();
}

std::string RenderSubscriptionError(std::string_view channel, std::string_view type,
                                    std::string_view message, int status) {
  JsonWriter w;
  w.BeginObject()
      .Key("event")
      .String("pusher:subscription_error")
      .Key("channel")
      .String(channel)
      .Key("data")
      .BeginObject()
      .Key("type")
      .String(type)
      .Key("error")
      .String(message)
      .Key("status")
      .Int(status)
      .EndObject()
      .EndObject();
  return w.Take();
}

}  // namespace relay::common
