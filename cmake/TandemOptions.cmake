# Build options. Each backend option defaults to "on if found": a machine without nvcc, UCX or
# NCCL still builds and tests everything else.
include(CheckLanguage)

check_language(CUDA)
if(CMAKE_CUDA_COMPILER)
  set(_tandem_cuda_default ON)
else()
  set(_tandem_cuda_default OFF)
endif()
option(TANDEM_CUDA "Build the CUDA engine backend (needs nvcc)" ${_tandem_cuda_default})

find_path(TANDEM_UCX_INCLUDE ucp/api/ucp.h)
if(TANDEM_UCX_INCLUDE)
  set(_tandem_ucx_default ON)
else()
  set(_tandem_ucx_default OFF)
endif()
option(TANDEM_UCX "Build the UCX transfer backend" ${_tandem_ucx_default})

find_path(TANDEM_NCCL_INCLUDE nccl.h HINTS /usr/local/cuda/include)
if(TANDEM_NCCL_INCLUDE AND TANDEM_CUDA)
  set(_tandem_nccl_default ON)
else()
  set(_tandem_nccl_default OFF)
endif()
option(TANDEM_NCCL "Build the NCCL transfer backend" ${_tandem_nccl_default})

# The daemons (gRPC, abseil, prometheus-cpp). OFF builds only the engine, the model code, the KV
# cache and their tests, with CUDA, GoogleTest, spdlog, fmt, CLI11 and nlohmann-json alone.
find_package(gRPC CONFIG QUIET)
if(gRPC_FOUND)
  set(_tandem_services_default ON)
else()
  set(_tandem_services_default OFF)
endif()
option(TANDEM_SERVICES "Build the gRPC/HTTP daemons" ${_tandem_services_default})

option(TANDEM_BUILD_TESTS "Build the unit and integration tests" ON)
option(TANDEM_BUILD_BENCH "Build the benchmarks" ON)
option(TANDEM_SANITIZE "Build with AddressSanitizer and UBSan" OFF)

if(TANDEM_CUDA)
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    # Hopper machine code plus portable PTX; never "native" (fails without a GPU).
    set(CMAKE_CUDA_ARCHITECTURES 90a-real 90-virtual)
  endif()
  enable_language(CUDA)
  find_package(CUDAToolkit REQUIRED)
endif()

if(TANDEM_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()

message(STATUS "tandem: CUDA=${TANDEM_CUDA} UCX=${TANDEM_UCX} NCCL=${TANDEM_NCCL} "
               "SERVICES=${TANDEM_SERVICES}")
