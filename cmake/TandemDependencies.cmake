# Third-party dependencies shared by every target. Everything here comes from Debian's archive
# (scripts/setup.sh) or, on the GPU machine, from its image.
find_package(Threads REQUIRED)
find_package(OpenMP REQUIRED)
find_package(fmt REQUIRED)
find_package(spdlog REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(CLI11 QUIET CONFIG)

# CLI11 and xxhash are single headers; TANDEM_EXTRA_INCLUDE lets a machine without their packages
# point at a copy of the header (the GPU machine).
set(TANDEM_EXTRA_INCLUDE "" CACHE PATH "Extra include directory searched for xxhash.h / CLI11")
if(NOT TARGET CLI11::CLI11)
  find_path(TANDEM_CLI11_INCLUDE CLI/CLI.hpp HINTS ${TANDEM_EXTRA_INCLUDE} REQUIRED)
  add_library(CLI11::CLI11 INTERFACE IMPORTED)
  target_include_directories(CLI11::CLI11 INTERFACE ${TANDEM_CLI11_INCLUDE})
endif()
find_path(TANDEM_XXHASH_INCLUDE xxhash.h HINTS ${TANDEM_EXTRA_INCLUDE} REQUIRED)
add_library(tandem_xxhash INTERFACE)
target_include_directories(tandem_xxhash SYSTEM INTERFACE ${TANDEM_XXHASH_INCLUDE})
target_compile_definitions(tandem_xxhash INTERFACE XXH_INLINE_ALL)

# BLAS for the CPU backend's matrix products. Without it the backend uses its own blocked GEMM.
set(BLA_VENDOR OpenBLAS)
find_package(BLAS QUIET)
find_path(TANDEM_CBLAS_INCLUDE cblas.h PATH_SUFFIXES openblas x86_64-linux-gnu/openblas-pthread)
if(BLAS_FOUND AND TANDEM_CBLAS_INCLUDE)
  set(TANDEM_HAVE_BLAS ON)
else()
  set(TANDEM_HAVE_BLAS OFF)
endif()
message(STATUS "tandem: BLAS=${TANDEM_HAVE_BLAS} ${TANDEM_CBLAS_INCLUDE}")

# Tokenizers need PCRE2 (Unicode regexes), utf8proc (normalization, Unicode categories) and
# SentencePiece. Without them (the GPU machine's image) the tokenizer library and the commands
# that need text are not built; the engine and its tests still are.
find_package(PkgConfig QUIET)
if(PkgConfig_FOUND)
  pkg_check_modules(PCRE2 IMPORTED_TARGET libpcre2-8)
  pkg_check_modules(UTF8PROC IMPORTED_TARGET libutf8proc)
  pkg_check_modules(SENTENCEPIECE IMPORTED_TARGET sentencepiece)
  pkg_check_modules(URING IMPORTED_TARGET liburing)
endif()
message(STATUS "tandem: io_uring (KV disk tier)=${URING_FOUND}")
if(PCRE2_FOUND AND UTF8PROC_FOUND AND SENTENCEPIECE_FOUND)
  set(_tandem_tokenizers_default ON)
else()
  set(_tandem_tokenizers_default OFF)
endif()
option(TANDEM_TOKENIZERS "Build the tokenizers and the commands that use them"
       ${_tandem_tokenizers_default})
message(STATUS "tandem: TOKENIZERS=${TANDEM_TOKENIZERS}")

# The daemons: gRPC and protobuf (wire), Boost.Beast/Asio (HTTP), prometheus-cpp (metrics),
# libsystemd (sd_notify).
if(TANDEM_SERVICES)
  find_package(Protobuf REQUIRED)
  find_package(gRPC CONFIG REQUIRED)
  find_package(prometheus-cpp CONFIG REQUIRED)
  find_package(Boost 1.74 REQUIRED)
  pkg_check_modules(SYSTEMD REQUIRED IMPORTED_TARGET libsystemd)
endif()
