# The layering (docs/design.md) as a test: with the include directories of a target (INCLUDES,
# '|'-separated, as the build gives them), '#include "<ALLOWED>"' must compile and each of
# '#include "<FORBIDDEN>"' ('|'-separated) must fail for want of the file.
#   cmake -DCXX=... -DINCLUDES=... -DALLOWED=... -DFORBIDDEN=... -DWORK=... -P layering_probe.cmake
string(REPLACE "|" ";" includes "${INCLUDES}")
string(REPLACE "|" ";" forbidden "${FORBIDDEN}")
set(flags)
foreach(dir IN LISTS includes)
  list(APPEND flags "-I${dir}")
endforeach()
file(MAKE_DIRECTORY ${WORK})

function(probe header result_var output_var)
  string(MAKE_C_IDENTIFIER "${header}" name)
  file(WRITE ${WORK}/${name}.cc "#include \"${header}\"\n")
  execute_process(COMMAND "${CXX}" -std=c++20 -fsyntax-only ${flags} ${WORK}/${name}.cc
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  set(${result_var} ${rc} PARENT_SCOPE)
  set(${output_var} "${out}" PARENT_SCOPE)
endfunction()

probe("${ALLOWED}" rc out)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the control, \"${ALLOWED}\", does not compile with ${flags}:\n${out}")
endif()
foreach(header IN LISTS forbidden)
  probe("${header}" rc out)
  if(rc EQUAL 0)
    message(FATAL_ERROR "\"${header}\" is reachable with ${flags}: the layering is broken")
  elseif(NOT out MATCHES "${header}: No such file")
    message(FATAL_ERROR "\"${header}\" failed to compile, but not for want of the file:\n${out}")
  endif()
endforeach()
