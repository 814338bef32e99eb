# Installs the build tree BUILD into a scratch prefix under WORK, checks that the package holds
# the core and nothing of the simulator or the engine, then configures, builds and runs
# tests/install_consumer against it.
#   cmake -DBUILD=... -DWORK=... -DSOURCE=.../tests/install_consumer -DCONFIG=Release
#         [-DEXE=<the project's executable to run, default consumer>]
#         [-DFLAGS=<compile and link flags, e.g. the library's sanitizer>] -P this
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    list(JOIN ARGN " " cmd)
    message(FATAL_ERROR "failed (${rc}): ${cmd}\n${out}")
  endif()
  message(STATUS "${out}")
endfunction()

file(REMOVE_RECURSE ${WORK})
set(prefix ${WORK}/prefix)
run(${CMAKE_COMMAND} --install ${BUILD} --prefix ${prefix} --config ${CONFIG})

# The package: the public headers, the core library, its config; no other library or header.
foreach(f include/marconi/prefix_cache.h include/marconi/status.h lib/libmarconi.a
    lib/cmake/marconi/marconiConfig.cmake lib/cmake/marconi/marconiConfigVersion.cmake
    lib/cmake/marconi/marconiTargets.cmake)
  if(NOT EXISTS ${prefix}/${f})
    message(FATAL_ERROR "the installed package lacks ${f}")
  endif()
endforeach()
file(GLOB_RECURSE installed RELATIVE ${prefix} ${prefix}/*)
foreach(f IN LISTS installed)
  if(f MATCHES "sim|engine|util/|cache/|policy/|libmarconi_")
    message(FATAL_ERROR "the installed package holds ${f}, which is not part of it")
  endif()
endforeach()
file(GLOB exports ${prefix}/lib/cmake/marconi/marconiTargets*.cmake)
foreach(f IN LISTS exports)
  file(READ ${f} text)
  if(text MATCHES "simdjson|zstd|sentencepiece|SENTENCEPIECE|openblas|OPENBLAS|CLI11|nlohmann")
    message(FATAL_ERROR "${f} drags in a dependency that is not the core's: ${CMAKE_MATCH_0}")
  endif()
endforeach()

# An outside project finds it through the prefix alone (no package registry, no source tree).
run(${CMAKE_COMMAND} -S ${SOURCE} -B ${WORK}/consumer -DCMAKE_BUILD_TYPE=${CONFIG}
    -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF
    "-DCMAKE_CXX_FLAGS=${FLAGS}" "-DCMAKE_EXE_LINKER_FLAGS=${FLAGS}")
run(${CMAKE_COMMAND} --build ${WORK}/consumer --config ${CONFIG})
if(NOT EXE)
  set(EXE consumer)
endif()
run(${WORK}/consumer/${EXE})
