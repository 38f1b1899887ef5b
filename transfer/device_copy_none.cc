// device_copy.h where tandem is built without CUDA: every call says so.
#include "transfer/device_copy.h"

namespace tandem::transfer {
namespace {

Status NoCuda() { return UnimplementedError("tandem was built without CUDA"); }

}  // namespace

int DeviceCount() { return 0; }
StatusOr<void*> AllocPinned(size_t) { return NoCuda(); }
void FreePinned(void*) {}
Status PinHost(void*, size_t) { return NoCuda(); }
void UnpinHost(void*) {}
StatusOr<void*> AllocDevice(int, size_t) { return NoCuda(); }
void FreeDevice(int, void*) {}
Status EnablePeerAccess(int, int) { return NoCuda(); }
Status CopySync(void*, const void*, size_t) { return NoCuda(); }
StatusOr<IpcExport> ExportIpc(void*, int) { return NoCuda(); }
StatusOr<std::pair<void*, int>> OpenIpc(const IpcExport&) { return NoCuda(); }
void CloseIpc(void*, uint64_t, int) {}
StatusOr<std::unique_ptr<DeviceCopier>> DeviceCopier::Create(int) { return NoCuda(); }

}  // namespace tandem::transfer
