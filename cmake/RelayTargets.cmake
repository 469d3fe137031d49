# Helpers that give Relay's own targets the same warnings and include root.
function(relay_target_defaults target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wno-missing-field-initializers)
  if(RELAY_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
  target_include_directories(${target} PUBLIC ${PROJECT_SOURCE_DIR})
endfunction()

function(relay_add_library name)
  add_library(${name} STATIC ${ARGN})
  relay_target_defaults(${name})
endfunction()

function(relay_add_executable name)
  add_executable(${name} ${ARGN})
  relay_target_defaults(${name})
endfunction()
