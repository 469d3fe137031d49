// File: frames.h
// The Pusher frames Relay sends, rendered in one place so every part emits byte-identical shapes.
// See ../shared/spec/pusher-protocol.md section 12 for which `data` fields are double-encoded.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace relay::common {

// {"event":E,"channel":C,"data":D[,"user_id":U]}. `data` is emitted as a JSON string unless
// `data_is_json` (client events forward the client's JSON value verbatim). `channel` and
// `user_id` are left out when empty.
std::string RenderEvent(std::string_view event, std::string_view channel, std::string_view data,
                        bool data_is_json = false, std::string_view user_id = {});

// {"event":"pusher:error","data":{"code":C|null,"message":M}}.
std::string RenderError(std::optional<int> code, std::string_view message);

// {"event":"pusher:subscription_error","channel":C,"data":{"type":T,"error":M,"status":S}}.
std::string RenderSubscriptionError(std::string_view channel, std::string_view type,
                                    std::string_view message, int status);

}  // namespace relay::common
