# cmake -DIN=<installed .proto> -DOUT=<copy> -P StripEtcdProto.cmake
# Copies one of etcd's protos without what only Go code generation and etcd's HTTP gateway use:
# the gogoproto and google.api imports and their options. No field, message or service changes,
# so the wire format is etcd's own.
file(READ "${IN}" text)
string(REGEX REPLACE "import \"gogoproto/gogo.proto\";" "" text "${text}")
string(REGEX REPLACE "import \"google/api/annotations.proto\";" "" text "${text}")
string(REGEX REPLACE "option \\(gogoproto\\.[a-z_]+\\) = [a-z]+;" "" text "${text}")
# option (google.api.http) = { post: "..." body: "*" additional_bindings { ... } }; spans lines
# and nests braces one level deep.
string(REGEX REPLACE "option \\(google\\.api\\.http\\) = {([^{}]|{[^{}]*})*};" "" text
       "${text}")
string(REGEX REPLACE "\\[\\(gogoproto\\.[^]]*\\]" "" text "${text}")
if(text MATCHES "gogoproto|google\\.api")
  message(FATAL_ERROR "${IN}: an option this step does not know how to strip is left")
endif()
file(WRITE "${OUT}" "${text}")
