// The emulator's device side: runs one thread block of an emulated kernel on the calling OS thread.
// Each CUDA thread is a fiber; fibers switch only at __syncthreads, warp collectives and exit, and the
// scheduler picks the next ready fiber at random from a seeded generator, so code that relies on an
// order the hardware does not promise (a missing barrier) gives wrong results under some seeds.
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <vector>

#include "../../kernels/common/dialect.cuh"
#include "../../kernels/common/mma.cuh"

#ifdef PERCEPT_EMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

// The hand-written switch is x86-64 only; elsewhere (or with PERCEPT_EMU_UCONTEXT) ucontext.
#if defined(__x86_64__) && !defined(PERCEPT_EMU_UCONTEXT)
#define PERCEPT_EMU_ASM_SWITCH 1
#else
#include <ucontext.h>
#endif

namespace percept_emu {

thread_local ThreadState* tls_thread;
thread_local BlockState* tls_block;

namespace {

#ifdef PERCEPT_EMU_ASAN
constexpr size_t kStackBytes = 512 * 1024;
#else
constexpr size_t kStackBytes = 64 * 1024;
#endif
constexpr size_t kGuardBytes = 4096;
// Bytes after the dynamic shared buffer that must still hold the poison after the block: a kernel
// that writes past its shared memory is reported even without AddressSanitizer.
constexpr size_t kSharedCanary = 256;

enum class Wait { Ready, Block, Warp, Done };

struct Copy {
    void* dst;
    const void* src;
    int bytes, src_bytes;
};

struct Fiber {
    ThreadState ts;
    void* sp = nullptr;
    char* stack_lo = nullptr;
    Wait wait = Wait::Ready;
    std::vector<Copy> copies;
    std::vector<size_t> group_ends;  // copies[..group_ends[i]] belong to committed groups 0..=i
    void* asan_fake = nullptr;
#if !defined(PERCEPT_EMU_ASM_SWITCH)
    ucontext_t uc;
#endif
};

struct PendingOp {
    uint32_t mask, arrived;
    CollectiveFn fn;
    const char* what;
};

struct Warp {
    uint32_t present = 0;
    std::vector<PendingOp> ops;
    WarpIo io;
};

struct SharedVar {
    const void* key;
    unsigned char* ptr;
    size_t bytes;
    const char* name;
};

struct Worker {
    std::vector<Fiber> fibers;
    std::vector<SharedVar> statics;
    std::vector<Warp> warps;
    std::vector<int> ready;
    BlockState block;
    const KernelEntry* entry = nullptr;
    void** args = nullptr;
    Fiber* current = nullptr;
    void* sched_sp = nullptr;
    uint64_t rng = 0;
    int n = 0, done = 0, at_barrier = 0;
    size_t dynamic_bytes = 0, static_bytes = 0, shared_limit = 0;
    bool failed = false;
    char msg[1024];
    const void* sched_stack_bottom = nullptr;
    size_t sched_stack_size = 0;
    void* sched_fake = nullptr;
#if !defined(PERCEPT_EMU_ASM_SWITCH)
    ucontext_t sched_uc;
#endif
    ~Worker() {
        for (Fiber& f : fibers) munmap(f.stack_lo - kGuardBytes, kStackBytes + kGuardBytes);
    }
};

// One per OS thread, reused by every block that thread runs (stacks are mapped once).
thread_local Worker tls_worker_storage;
thread_local Worker* tls_worker;

// SplitMix64, the generator of src/util/rng.rs (written again here: this runtime is C++).
uint64_t next_random(uint64_t& s) {
    s += 0x9E3779B97F4A7C15ull;
    uint64_t z = s;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

inline void asan_start(void** fake, const void* bottom, size_t size) {
#ifdef PERCEPT_EMU_ASAN
    __sanitizer_start_switch_fiber(fake, bottom, size);
#else
    (void)fake, (void)bottom, (void)size;
#endif
}
inline void asan_finish(void* fake, const void** bottom, size_t* size) {
#ifdef PERCEPT_EMU_ASAN
    __sanitizer_finish_switch_fiber(fake, bottom, size);
#else
    (void)fake, (void)bottom, (void)size;
#endif
}

}  // namespace
}  // namespace percept_emu

using namespace percept_emu;

extern "C" void percept_emu_fiber_main(Fiber* f);

#if defined(PERCEPT_EMU_ASM_SWITCH)
// Saves the callee-saved registers on the current stack, stores the stack pointer in *save and
// resumes the context whose stack pointer is `to`. Far cheaper than swapcontext, which makes a
// signal-mask system call on every switch. The SSE/x87 control words are not switched (fldcw alone
// cost more than the rest): kernels never change rounding modes, so all fibers share the thread's.
extern "C" void percept_emu_switch(void** save, void* to);
asm(R"(
    .text
    .globl percept_emu_switch
    .hidden percept_emu_switch
    .type percept_emu_switch, @function
percept_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size percept_emu_switch, .-percept_emu_switch

    .globl percept_emu_fiber_start
    .hidden percept_emu_fiber_start
    .type percept_emu_fiber_start, @function
percept_emu_fiber_start:
    movq %r12, %rdi
    call percept_emu_fiber_main@PLT
    ud2
    .size percept_emu_fiber_start, .-percept_emu_fiber_start
)");
extern "C" void percept_emu_fiber_start();

static void init_fiber_stack(Fiber* f) {
#ifdef PERCEPT_EMU_ASAN
    // Frames of fibers that never returned (exit and failure switch away) leave poisoned redzones.
    __asan_unpoison_memory_region(f->stack_lo, kStackBytes);
#endif
    // Fibers' stacks start at different cache-line offsets: identical offsets would put every
    // fiber's hot frames in the same L1 set.
    size_t color = ((size_t)f->ts.linear % 61) * 64;
    char* top = f->stack_lo + kStackBytes - color;
    // The switch pops six registers and returns into fiber_start with rsp = top - 16, 16-byte
    // aligned, so its call enters fiber_main with the alignment the ABI requires.
    uint64_t* sp = reinterpret_cast<uint64_t*>(top - 16);
    *--sp = reinterpret_cast<uint64_t>(&percept_emu_fiber_start);
    *--sp = 0;                                  // rbp
    *--sp = 0;                                  // rbx
    *--sp = reinterpret_cast<uint64_t>(f);      // r12: the fiber, passed on by fiber_start
    *--sp = 0;                                  // r13
    *--sp = 0;                                  // r14
    *--sp = 0;                                  // r15
    f->sp = sp;
}
static void switch_into(Worker* w, Fiber* f) { percept_emu_switch(&w->sched_sp, f->sp); }
static void switch_out(Worker* w, Fiber* f) { percept_emu_switch(&f->sp, w->sched_sp); }
#else
static void fiber_entry_uc(unsigned hi, unsigned lo) {
    percept_emu_fiber_main(reinterpret_cast<Fiber*>((static_cast<uintptr_t>(hi) << 32) | lo));
}
static void init_fiber_stack(Fiber* f) {
#ifdef PERCEPT_EMU_ASAN
    __asan_unpoison_memory_region(f->stack_lo, kStackBytes);
#endif
    getcontext(&f->uc);
    f->uc.uc_stack.ss_sp = f->stack_lo;
    f->uc.uc_stack.ss_size = kStackBytes;
    f->uc.uc_link = nullptr;
    uintptr_t p = reinterpret_cast<uintptr_t>(f);
    makecontext(&f->uc, reinterpret_cast<void (*)()>(fiber_entry_uc), 2, unsigned(p >> 32), unsigned(p));
}
static void switch_into(Worker* w, Fiber* f) { swapcontext(&w->sched_uc, &f->uc); }
static void switch_out(Worker* w, Fiber* f) { swapcontext(&f->uc, &w->sched_uc); }
#endif

namespace percept_emu {
namespace {

// Returns to the scheduler; comes back when the scheduler resumes this fiber (never if exiting).
void yield(bool exiting) {
    Worker* w = tls_worker;
    Fiber* f = w->current;
    asan_start(exiting ? nullptr : &f->asan_fake, w->sched_stack_bottom, w->sched_stack_size);
    switch_out(w, f);
    asan_finish(f->asan_fake, &w->sched_stack_bottom, &w->sched_stack_size);
}

void make_ready(Worker* w, int i) {
    w->fibers[i].wait = Wait::Ready;
    w->ready.push_back(i);
}

// Threads that have exited count as arrived, as on the hardware.
void release_block_barrier_if_complete(Worker* w) {
    if (w->at_barrier == 0 || w->at_barrier + w->done < w->n) return;
    for (int i = 0; i < w->n; i++)
        if (w->fibers[i].wait == Wait::Block) make_ready(w, i);
    w->at_barrier = 0;
}

void allocate_stacks(Worker* w, int n) {
    while ((int)w->fibers.size() < n) {
        void* p = mmap(nullptr, kStackBytes + kGuardBytes, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) {
            std::fprintf(stderr, "percept emulator: cannot map a fiber stack\n");
            std::abort();
        }
        // A stack overflow hits this page and faults instead of corrupting a neighbour.
        mprotect(p, kGuardBytes, PROT_NONE);
        w->fibers.emplace_back();
        w->fibers.back().stack_lo = static_cast<char*>(p) + kGuardBytes;
        w->fibers.back().copies.reserve(64);
    }
}

#ifdef PERCEPT_EMU_ASAN
constexpr size_t kCanary = 0;  // exact sizes: AddressSanitizer guards the ends itself
#else
constexpr size_t kCanary = kSharedCanary;
#endif

// Shared memory starts as 0xFF bytes (NaN), as uninitialised memory should look, followed by a canary.
unsigned char* alloc_shared(size_t bytes) {
    void* p = nullptr;
    size_t total = bytes + kCanary;
    // Exact under AddressSanitizer, so even a one-byte overrun is reported.
    if (posix_memalign(&p, 16, total ? total : 1) != 0) {
        std::fprintf(stderr, "percept emulator: out of memory for %zu bytes of shared memory\n", bytes);
        std::abort();
    }
    std::memset(p, 0xFF, bytes + kCanary);
    return static_cast<unsigned char*>(p);
}

bool canary_intact(const unsigned char* p, size_t bytes) {
    for (size_t i = bytes; i < bytes + kCanary; i++)
        if (p[i] != 0xFF) return false;
    return true;
}

void describe_deadlock(Worker* w) {
    int at_block = 0, at_warp = 0;
    for (int i = 0; i < w->n; i++) {
        at_block += w->fibers[i].wait == Wait::Block;
        at_warp += w->fibers[i].wait == Wait::Warp;
    }
    int len = std::snprintf(w->msg, sizeof w->msg,
                            "deadlock in block (%u,%u,%u): %d threads wait at __syncthreads, %d in warp "
                            "collectives, %d exited, of %d",
                            w->block.block_idx.x, w->block.block_idx.y, w->block.block_idx.z, at_block, at_warp,
                            w->done, w->n);
    for (size_t k = 0; k < (size_t)(w->n + 31) / 32 && len < (int)sizeof w->msg - 120; k++)
        for (const PendingOp& op : w->warps[k].ops)
            len += std::snprintf(w->msg + len, sizeof w->msg - len,
                                 "; warp %zu: %s with mask 0x%08x has only lanes 0x%08x", k, op.what, op.mask,
                                 op.arrived);
    w->failed = true;
}

}  // namespace

void fail(const char* fmt, ...) {
    Worker* w = tls_worker;
    int len = std::snprintf(w->msg, sizeof w->msg, "block (%u,%u,%u) thread (%u,%u,%u): ", w->block.block_idx.x,
                            w->block.block_idx.y, w->block.block_idx.z, tls_thread->tid.x, tls_thread->tid.y,
                            tls_thread->tid.z);
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(w->msg + len, sizeof w->msg - len, fmt, ap);
    va_end(ap);
    w->failed = true;
    yield(true);
    std::abort();  // the scheduler never resumes a failed block
}

void* shared_static(const void* key, size_t bytes, const char* name) {
    Worker* w = tls_worker;
    for (const SharedVar& v : w->statics)
        if (v.key == key) return v.ptr;
    w->static_bytes += bytes;
    // Static shared memory is capped at 48 KiB per block by the compiler; static plus dynamic by the
    // launch (48 KiB, or the architecture's maximum after opting in).
    if (w->static_bytes > 48 * 1024)
        fail("static shared memory reaches %zu bytes with %s, over the 48 KiB limit", w->static_bytes, name);
    if (w->static_bytes + w->dynamic_bytes > w->shared_limit)
        fail("static (%zu bytes, with %s) plus dynamic (%zu bytes) shared memory exceed the %zu bytes this launch "
             "may use",
             w->static_bytes, name, w->dynamic_bytes, w->shared_limit);
    w->statics.push_back({key, alloc_shared(bytes), bytes, name});
    return w->statics.back().ptr;
}

void syncthreads() {
    Worker* w = tls_worker;
    w->current->wait = Wait::Block;
    w->at_barrier++;
    release_block_barrier_if_complete(w);
    yield(false);
}

void warp_collective(const char* what, uint32_t mask, CollectiveFn complete, const uint32_t* in, int in_words,
                     uint32_t* out, int out_words) {
    Worker* w = tls_worker;
    unsigned lane = tls_thread->linear & 31u, wi = tls_thread->linear >> 5;
    Warp& warp = w->warps[wi];
    if (!(mask >> lane & 1u)) fail("%s: the calling lane %u is not in mask 0x%08x", what, lane, mask);
    if (mask & ~warp.present)
        fail("%s: mask 0x%08x names lanes beyond the block's last thread (present 0x%08x)", what, mask,
             warp.present);
    PendingOp* op = nullptr;
    for (PendingOp& o : warp.ops) {
        if (o.mask == mask && o.fn == complete && !(o.arrived >> lane & 1u)) {
            op = &o;
        } else if (o.mask & mask) {
            fail("%s with mask 0x%08x overlaps %s with mask 0x%08x still waiting for lanes (arrived 0x%08x)", what,
                 mask, o.what, o.mask, o.arrived);
        }
    }
    if (!op) {
        warp.ops.push_back({mask, 0, complete, what});
        op = &warp.ops.back();
    }
    for (int k = 0; k < in_words; k++) warp.io.in[lane][k] = in[k];
    op->arrived |= 1u << lane;
    w->current->wait = Wait::Warp;
    if (op->arrived == mask) {
        complete(&warp.io, mask);
        for (unsigned l = 0; l < 32; l++)
            if (mask >> l & 1u) make_ready(w, (int)(wi * 32 + l));
        warp.ops.erase(warp.ops.begin() + (op - warp.ops.data()));
    }
    yield(false);
    for (int k = 0; k < out_words; k++) out[k] = warp.io.out[lane][k];
}

// True when [p, p + bytes) lies inside this block's shared memory (a SHARED variable or the dynamic
// buffer): the PTX instructions that take shared addresses read garbage from anything else.
static bool in_shared(const void* p, size_t bytes) {
    Worker* w = tls_worker;
    auto inside = [&](const unsigned char* base, size_t len) {
        auto a = static_cast<const unsigned char*>(p);
        return a >= base && a + bytes <= base + len;
    };
    if (inside(w->block.dynamic_shared, w->dynamic_bytes)) return true;
    for (const SharedVar& v : w->statics)
        if (inside(v.ptr, v.bytes)) return true;
    return false;
}

void cp_async(void* dst, const void* src, int bytes, int src_bytes) {
    if (reinterpret_cast<uintptr_t>(dst) % bytes || (src_bytes && reinterpret_cast<uintptr_t>(src) % bytes))
        fail("cp.async of %d bytes needs %d-byte aligned addresses, got dst %p src %p", bytes, bytes, dst, src);
    if (!in_shared(dst, bytes)) fail("cp.async destination %p is not (wholly) in shared memory", dst);
    if (src_bytes && in_shared(src, src_bytes)) fail("cp.async source %p is shared memory, not global", src);
    tls_worker->current->copies.push_back({dst, src, bytes, src_bytes});
}

void cp_async_commit() {
    Fiber* f = tls_worker->current;
    f->group_ends.push_back(f->copies.size());
}

void cp_async_wait(int pending_groups) {
    Fiber* f = tls_worker->current;
    int groups = (int)f->group_ends.size();
    if (groups <= pending_groups) return;
    size_t end = f->group_ends[groups - pending_groups - 1];
    for (size_t i = 0; i < end; i++) {
        const Copy& c = f->copies[i];
        unsigned char* d = static_cast<unsigned char*>(c.dst);
        if (c.src_bytes) std::memcpy(d, c.src, c.src_bytes);
        std::memset(d + c.src_bytes, 0, c.bytes - c.src_bytes);
    }
    f->copies.erase(f->copies.begin(), f->copies.begin() + end);
    f->group_ends.erase(f->group_ends.begin(), f->group_ends.begin() + (groups - pending_groups));
    for (size_t& e : f->group_ends) e -= end;
}

namespace {

inline float half_to_f32(uint32_t bits, bool bf) {
    if (bf) return bf16_to_f32(bf16{(u16)bits});
    return f16_to_f32(f16{(u16)bits});
}
inline float elem(uint32_t word, int hi, bool bf) { return half_to_f32(hi ? word >> 16 : word & 0xFFFFu, bf); }

// in: a[0..4], b[4..6], c[6..10] as bits; out: d[0..4].
template <bool BF>
void mma_complete(WarpIo* io, uint32_t) {
    float A[16][16], B[16][8], C[16][8];
    for (int l = 0; l < 32; l++) {
        int g = l >> 2, t = l & 3;
        const uint32_t* r = io->in[l];
        for (int h = 0; h < 2; h++) {
            A[g][2 * t + h] = elem(r[0], h, BF);
            A[g + 8][2 * t + h] = elem(r[1], h, BF);
            A[g][2 * t + 8 + h] = elem(r[2], h, BF);
            A[g + 8][2 * t + 8 + h] = elem(r[3], h, BF);
            B[2 * t + h][g] = elem(r[4], h, BF);
            B[2 * t + 8 + h][g] = elem(r[5], h, BF);
        }
        std::memcpy(&C[g][2 * t], &r[6], 8);
        std::memcpy(&C[g + 8][2 * t], &r[8], 8);
    }
    float D[16][8];
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 8; j++) {
            // Products of 16-bit floats are exact in double; one rounding at the end.
            double acc = C[i][j];
            for (int k = 0; k < 16; k++) acc += (double)A[i][k] * (double)B[k][j];
            D[i][j] = (float)acc;
        }
    for (int l = 0; l < 32; l++) {
        int g = l >> 2, t = l & 3;
        std::memcpy(&io->out[l][0], &D[g][2 * t], 8);
        std::memcpy(&io->out[l][2], &D[g + 8][2 * t], 8);
    }
}

// in: row address (2 words); the matrix count and .trans are template arguments.
template <int COUNT, bool TRANS>
void ldmatrix_complete(WarpIo* io, uint32_t) {
    for (int j = 0; j < COUNT; j++) {
        const u16* rows[8];
        for (int r = 0; r < 8; r++) {
            uint64_t a = (uint64_t)io->in[8 * j + r][0] | ((uint64_t)io->in[8 * j + r][1] << 32);
            rows[r] = reinterpret_cast<const u16*>(a);
        }
        for (int l = 0; l < 32; l++) {
            int g = l >> 2, t = l & 3;
            u16 lo = TRANS ? rows[2 * t][g] : rows[g][2 * t];
            u16 hi = TRANS ? rows[2 * t + 1][g] : rows[g][2 * t + 1];
            io->out[l][j] = (uint32_t)lo | ((uint32_t)hi << 16);
        }
    }
}

}  // namespace

void mma_16816(float* d, const u32* a, const u32* b, const float* c, bool bf16_inputs) {
    uint32_t in[10];
    std::memcpy(in, a, 16);
    std::memcpy(in + 4, b, 8);
    std::memcpy(in + 6, c, 16);
    uint32_t out[4];
    warp_collective(bf16_inputs ? "mma.sync.m16n8k16.bf16" : "mma.sync.m16n8k16.f16", FULL_MASK,
                    bf16_inputs ? mma_complete<true> : mma_complete<false>, in, 10, out, 4);
    std::memcpy(d, out, 16);
}

void ldmatrix(u32* r, const void* row_addr, int count, bool trans) {
    unsigned lane = tls_thread->linear & 31u;
    if ((int)lane < 8 * count && reinterpret_cast<uintptr_t>(row_addr) % 16)
        fail("ldmatrix: lane %u row address %p is not 16-byte aligned", lane, row_addr);
    if ((int)lane < 8 * count && !in_shared(row_addr, 16))
        fail("ldmatrix: lane %u row address %p is not a 16-byte row in shared memory", lane, row_addr);
    uint64_t a = reinterpret_cast<uint64_t>(row_addr);
    uint32_t in[2] = {(uint32_t)a, (uint32_t)(a >> 32)};
    CollectiveFn fn = nullptr;
    switch (count * 2 + trans) {
        case 2: fn = ldmatrix_complete<1, false>; break;
        case 3: fn = ldmatrix_complete<1, true>; break;
        case 4: fn = ldmatrix_complete<2, false>; break;
        case 5: fn = ldmatrix_complete<2, true>; break;
        case 8: fn = ldmatrix_complete<4, false>; break;
        default: fn = ldmatrix_complete<4, true>; break;
    }
    warp_collective(trans ? "ldmatrix.trans" : "ldmatrix", FULL_MASK, fn, in, 2, r, count);
}

}  // namespace percept_emu

namespace {

// A bad address in an emulated kernel kills the process as an illegal address would end the CUDA
// context; first name the kernel, block and thread. Not under AddressSanitizer, whose report is better.
struct sigaction old_segv, old_bus;
thread_local bool tls_in_block;

void on_fault(int sig, siginfo_t* info, void* ctx) {
    Worker* w = tls_worker;
    if (tls_in_block && w && w->current && w->entry) {
        const Fiber* f = w->current;
        const char* addr = static_cast<const char*>(info->si_addr);
        bool overflow = addr < f->stack_lo && addr >= f->stack_lo - kGuardBytes;
        char buf[512];
        int len = std::snprintf(buf, sizeof buf,
                                "percept emulator: kernel %s, block (%u,%u,%u) thread (%u,%u,%u): %s at address %p\n",
                                w->entry->name, w->block.block_idx.x, w->block.block_idx.y, w->block.block_idx.z,
                                f->ts.tid.x, f->ts.tid.y, f->ts.tid.z,
                                overflow ? "stack overflow of the emulated thread" : "illegal memory access",
                                info->si_addr);
        if (len > 0) (void)!write(2, buf, (size_t)len);
    }
    // Hand over to the previous handler (Rust's stack-overflow report), else die by the default action.
    struct sigaction* old = sig == SIGSEGV ? &old_segv : &old_bus;
    if ((old->sa_flags & SA_SIGINFO) && old->sa_sigaction) {
        old->sa_sigaction(sig, info, ctx);
    } else if (old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN) {
        old->sa_handler(sig);
    } else {
        signal(sig, SIG_DFL);  // returning re-runs the access, which now ends the process
    }
}

void install_fault_handler() {
#ifndef PERCEPT_EMU_ASAN
    static std::once_flag once;
    std::call_once(once, [] {
        struct sigaction sa;
        std::memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_fault;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK;  // Rust threads have an alternate signal stack
        sigemptyset(&sa.sa_mask);
        sigaction(SIGSEGV, &sa, &old_segv);
        sigaction(SIGBUS, &sa, &old_bus);
    });
#endif
}

}  // namespace

extern "C" void percept_emu_fiber_main(Fiber* f) {
    Worker* w = tls_worker;
    asan_finish(nullptr, &w->sched_stack_bottom, &w->sched_stack_size);
    w->entry->invoke(w->args);
    f->wait = Wait::Done;
    f->copies.clear();
    f->group_ends.clear();
    w->done++;
    release_block_barrier_if_complete(w);
    yield(true);
    std::abort();
}

// Runs block `block_idx` of a launch to completion. Returns 0, or 1 with a message in `err`.
// `shared_limit` bounds static plus dynamic shared memory.
extern "C" int percept_emu_run_block(const KernelEntry* entry, void** args, const uint32_t grid[3],
                                     const uint32_t block[3], const uint32_t block_idx[3], size_t shared_bytes,
                                     size_t shared_limit, uint64_t seed, char* err, size_t err_len) {
    tls_worker = &tls_worker_storage;
    install_fault_handler();
    Worker* w = tls_worker;
    int n = (int)(block[0] * block[1] * block[2]);
    allocate_stacks(w, n);
    w->entry = entry;
    w->args = args;
    w->n = n;
    w->done = 0;
    w->at_barrier = 0;
    w->failed = false;
    w->msg[0] = '\0';
    w->dynamic_bytes = shared_bytes;
    w->static_bytes = 0;
    w->shared_limit = shared_limit;
    w->block.grid_dim = {grid[0], grid[1], grid[2]};
    w->block.block_dim = {block[0], block[1], block[2]};
    w->block.block_idx = {block_idx[0], block_idx[1], block_idx[2]};
    uint64_t mix = seed ^ (((uint64_t)block_idx[2] * grid[1] + block_idx[1]) * grid[0] + block_idx[0]) * 0xD6E8FEB86659FD93ull;
    w->rng = next_random(mix);

    unsigned char* shared = alloc_shared(shared_bytes);
    w->block.dynamic_shared = shared;
    tls_block = &w->block;

    size_t n_warps = (size_t)(n + 31) / 32;
    if (w->warps.size() < n_warps) w->warps.resize(n_warps);
    for (int k = 0; k < (int)n_warps; k++) {
        w->warps[k].ops.clear();
        int lanes = n - 32 * k < 32 ? n - 32 * k : 32;
        w->warps[k].present = lanes == 32 ? FULL_MASK : ((1u << lanes) - 1u);
    }
    w->ready.clear();
    for (int i = 0; i < n; i++) {
        Fiber& f = w->fibers[i];
        f.ts.linear = (unsigned)i;
        f.ts.tid = {(unsigned)i % block[0], ((unsigned)i / block[0]) % block[1], (unsigned)i / (block[0] * block[1])};
        f.wait = Wait::Ready;
        f.copies.clear();
        f.group_ends.clear();
        f.asan_fake = nullptr;
        init_fiber_stack(&f);
        w->ready.push_back(i);
    }

    tls_in_block = true;
    while (!w->failed && !w->ready.empty()) {
        size_t k = (size_t)(((unsigned __int128)next_random(w->rng) * w->ready.size()) >> 64);
        int i = w->ready[k];
        w->ready[k] = w->ready.back();
        w->ready.pop_back();
        Fiber* f = &w->fibers[i];
        w->current = f;
        tls_thread = &f->ts;
        asan_start(&w->sched_fake, f->stack_lo, kStackBytes);
        switch_into(w, f);
        asan_finish(w->sched_fake, nullptr, nullptr);
    }
    tls_in_block = false;
    if (!w->failed && w->done < n) describe_deadlock(w);
    if (!w->failed && !canary_intact(shared, shared_bytes)) {
        std::snprintf(w->msg, sizeof w->msg,
                      "block (%u,%u,%u) wrote past the end of its %zu bytes of dynamic shared memory", block_idx[0],
                      block_idx[1], block_idx[2], shared_bytes);
        w->failed = true;
    }
    for (const SharedVar& v : w->statics) {
        if (!w->failed && !canary_intact(v.ptr, v.bytes)) {
            std::snprintf(w->msg, sizeof w->msg,
                          "block (%u,%u,%u) wrote past the end of shared variable %s (%zu bytes)", block_idx[0],
                          block_idx[1], block_idx[2], v.name, v.bytes);
            w->failed = true;
        }
        std::free(v.ptr);
    }
    w->statics.clear();
    std::free(shared);
    tls_thread = nullptr;
    tls_block = nullptr;
    if (w->failed) {
        std::snprintf(err, err_len, "%s", w->msg);
        return 1;
    }
    return 0;
}
