# Warning and sanitizer flags shared by every isr target.
# Use isr_target_flags(<target>) on targets we own; third-party and
# Qt-generated code stays untouched.

set(ISR_WARNING_FLAGS -Wall -Wextra -Wnon-virtual-dtor -Wformat=2)

if(ISR_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()

if(ISR_FUZZ)
  # Coverage instrumentation for libFuzzer on everything we compile; only the
  # fuzz target executables link the libFuzzer runtime (-fsanitize=fuzzer).
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
                      -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()

function(isr_target_flags target)
  target_compile_options(${target} PRIVATE ${ISR_WARNING_FLAGS})
  if(ISR_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
