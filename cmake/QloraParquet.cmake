# Parquet data sets through Apache Arrow's C++ library (include/qlora/data/parquet.hpp), for the program and the
# tests. QLORA_PARQUET: AUTO (the default: used when found), ON (an error when not found) or OFF.
# Found as a system install (find_package(Parquet): Arrow's own packages, conda, a source build) or, failing that,
# as the copy of the libraries and headers inside Python's pyarrow wheel (`pip install pyarrow`: no Debian package
# has Arrow). Gives the target qlora::parquet (Arrow + Parquet, and QLORA_HAVE_PARQUET=1) when found, and, for the
# pyarrow copy, QLORA_PARQUET_RUNTIME_LIBS: the libraries an installed program needs beside it.
set(QLORA_PARQUET AUTO CACHE STRING "Read .parquet data sets with Apache Arrow: AUTO, ON or OFF")
set_property(CACHE QLORA_PARQUET PROPERTY STRINGS AUTO ON OFF)

set(qlora_parquet_from "")
if(NOT QLORA_PARQUET STREQUAL "OFF")
  find_package(Parquet CONFIG QUIET)
  if(TARGET Parquet::parquet_shared)
    add_library(qlora_parquet INTERFACE)
    target_link_libraries(qlora_parquet INTERFACE Parquet::parquet_shared)
    set(qlora_parquet_from "Apache Arrow ${Parquet_VERSION} (system)")
  elseif(NOT CMAKE_CROSSCOMPILING)  # the wheel's libraries are for this machine only
    find_package(Python3 COMPONENTS Interpreter QUIET)
    if(Python3_Interpreter_FOUND)
      execute_process(
        COMMAND ${Python3_EXECUTABLE} -c "import pyarrow as pa; print(pa.get_include()); print(pa.get_library_dirs()[0]); print(pa.__version__)"
        OUTPUT_VARIABLE pyarrow_out ERROR_QUIET RESULT_VARIABLE pyarrow_rc OUTPUT_STRIP_TRAILING_WHITESPACE)
      if(pyarrow_rc EQUAL 0)
        string(REPLACE "\n" ";" pyarrow_out "${pyarrow_out}")
        list(GET pyarrow_out 0 pyarrow_include)
        list(GET pyarrow_out 1 pyarrow_libdir)
        list(GET pyarrow_out 2 pyarrow_version)
        file(GLOB pyarrow_libarrow "${pyarrow_libdir}/libarrow.so.[0-9]*")
        file(GLOB pyarrow_libparquet "${pyarrow_libdir}/libparquet.so.[0-9]*")
        list(FILTER pyarrow_libarrow EXCLUDE REGEX "\\.so\\.[0-9]+\\.[0-9]")  # libarrow.so.2600, not .2600.1.0
        list(FILTER pyarrow_libparquet EXCLUDE REGEX "\\.so\\.[0-9]+\\.[0-9]")
        if(pyarrow_libarrow AND pyarrow_libparquet AND EXISTS "${pyarrow_include}/parquet/arrow/reader.h")
          # The two libraries are copied into the build tree and linked from there: the program keeps working when
          # pip upgrades or removes pyarrow, and for users who cannot read the site-packages it came from.
          set(qlora_arrow_dir "${CMAKE_BINARY_DIR}/lib")
          file(COPY ${pyarrow_libarrow} ${pyarrow_libparquet} DESTINATION "${qlora_arrow_dir}")
          get_filename_component(arrow_name "${pyarrow_libarrow}" NAME)
          get_filename_component(parquet_name "${pyarrow_libparquet}" NAME)
          add_library(qlora_parquet INTERFACE)
          target_include_directories(qlora_parquet SYSTEM INTERFACE "${pyarrow_include}")
          target_link_libraries(qlora_parquet INTERFACE "${qlora_arrow_dir}/${parquet_name}" "${qlora_arrow_dir}/${arrow_name}")
          target_link_options(qlora_parquet INTERFACE "LINKER:-rpath,${qlora_arrow_dir}")
          set(QLORA_PARQUET_RUNTIME_LIBS "${qlora_arrow_dir}/${parquet_name}" "${qlora_arrow_dir}/${arrow_name}")
          set(qlora_parquet_from "pyarrow ${pyarrow_version} (copied from ${pyarrow_libdir} into ${qlora_arrow_dir})")
        endif()
      endif()
    endif()
  endif()
endif()

if(qlora_parquet_from)
  target_link_libraries(qlora_parquet INTERFACE qlora::qlora)
  target_compile_definitions(qlora_parquet INTERFACE QLORA_HAVE_PARQUET=1)
  add_library(qlora::parquet ALIAS qlora_parquet)
  message(STATUS "qlora: Parquet data sets read with ${qlora_parquet_from}")
elseif(QLORA_PARQUET STREQUAL "ON")
  message(FATAL_ERROR "qlora: QLORA_PARQUET=ON but Apache Arrow's C++ library was found neither as a system package "
                      "(find_package(Parquet)) nor in Python's pyarrow: run `pip install pyarrow`, or set QLORA_PARQUET=OFF")
else()
  message(STATUS "qlora: no Apache Arrow found (pip install pyarrow): .parquet data sets are refused with a message")
endif()
