# Compiles SOURCE with -Werror and the given DEFINE and passes only if the compiler rejects it with
# a message matching EXPECT (or, with EXPECT empty, only if it compiles: the control).
#   cmake -DCXX=... -DINCLUDE=... -DSOURCE=... -DDEFINE=... [-DEXPECT=regex] -P check_fails.cmake
execute_process(
  COMMAND "${CXX}" -std=c++20 -Wall -Wextra -Werror -fsyntax-only "-I${INCLUDE}" "-D${DEFINE}"
          "${SOURCE}"
  RESULT_VARIABLE rc
  OUTPUT_VARIABLE out
  ERROR_VARIABLE out)
if(EXPECT STREQUAL "")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "the control snippet does not compile:\n${out}")
  endif()
elseif(rc EQUAL 0)
  message(FATAL_ERROR "${SOURCE} with ${DEFINE} compiled, but it must not")
elseif(NOT out MATCHES "${EXPECT}")
  message(FATAL_ERROR "${SOURCE} with ${DEFINE} failed, but not for the expected reason "
                      "(${EXPECT}):\n${out}")
endif()
