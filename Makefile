# hv: EPT memory-overcommit microhypervisor.
#   make            build build/hv.efi
#   make run        build, then boot the demo in Bochs (serial log on the terminal)
#   make test       host tests, then every emulator scenario (two at a time)
#   make test-host  unit tests (plain and ASan/UBSan), simulator and fuzzer; no emulator
#   make scenario NAME=boot-bochs   one scenario
# Every target installs what it needs (tools/deps.sh) the first time.

BUILD      := build
DEPS_STAMP := $(BUILD)/deps/packages.stamp
LZ4_DIR    := $(BUILD)/lz4
LZ4_STAMP  := $(LZ4_DIR)/lib/lz4.c
VERSION    := $(shell git describe --always --dirty 2>/dev/null || echo unknown)

CC      := gcc
LD      := ld
OBJCOPY := objcopy

EFI_INC  := /usr/include/efi
EFI_LIB  := /usr/lib
EFI_CRT0 := $(EFI_LIB)/crt0-efi-x86_64.o

WARN := -Wall -Wextra -Werror -Wno-unused-parameter
# The core: freestanding, no red zone (interrupts use the stack), no SSE/AVX
# (guest FPU state never needs saving on an exit), frame pointers for stack
# traces. -fpic and -fshort-wchar because GNU-EFI images are relocatable
# shared objects with 16-bit CHAR16.
CORE_CFLAGS = -std=gnu11 -O2 -g $(WARN) -ffreestanding -fno-builtin -nostdinc \
	-isystem $(shell $(CC) -print-file-name=include) \
	-mno-red-zone -mgeneral-regs-only -fno-omit-frame-pointer \
	-fpic -fshort-wchar -fno-stack-protector -fno-strict-aliasing \
	-fno-asynchronous-unwind-tables -maccumulate-outgoing-args \
	-DGNU_EFI_USE_MS_ABI -DHV_VERSION='"$(VERSION)"' \
	-I. -I$(LZ4_DIR)/lib
EFI_CFLAGS  = -I$(EFI_INC) -I$(EFI_INC)/x86_64
LZ4_CFLAGS  := -DLZ4_FREESTANDING=1 -DLZ4_memcpy=__builtin_memcpy \
	-DLZ4_memmove=__builtin_memmove -DLZ4_memset=__builtin_memset

CORE_SRCS := \
	boot/efi_main.c boot/config.c \
	arch/main.c arch/console.c arch/desc.c arch/exception.c arch/memory.c \
	arch/pt.c arch/tsc.c arch/acpi.c arch/power.c arch/storage.c \
	arch/isr.S arch/desc_load.S arch/msr_safe.S arch/stack_switch.S \
	drivers/serial.c drivers/pci.c drivers/nvme_proto.c drivers/blk.c drivers/ata.c drivers/nvme.c \
	mm/frame.c mm/compress.c mm/zpool.c mm/hash.c mm/xxh_shim.c mm/p2m.c mm/p2m_map.c mm/p2m_fault.c mm/p2m_reclaim.c mm/p2m_share.c mm/p2m_balloon.c mm/p2m_sample.c mm/mm.c mm/share.c mm/swap.c mm/balloon.c mm/policy.c mm/policy_balloon.c mm/console.c mm/dump.c mm/stats_json.c mm/alerts.c mm/policy_alloc.c mm/policy_admit.c \
	vmx/caps.c vmx/vmx.c vmx/entry.S vmx/exit.c vmx/policy.c vmx/vm.c \
	vmx/sched.c vmx/linux.c vmx/vm_mem.c vmx/ept_dump.c vmx/pic.c vmx/pit.c vmx/uart.c vmx/rtc.c vmx/platform.c \
	lib/string.c lib/fmt.c lib/log.c
# The per-page transition trace (docs/trace.md).
CORE_SRCS += mm/trace.c
CORE_OBJS := $(patsubst %,$(BUILD)/obj/%.o,$(CORE_SRCS)) $(BUILD)/obj/lz4.o $(BUILD)/obj/xxhash.o

.PHONY: all deps run test test-host scenario experiment clean format
all: $(BUILD)/hv.efi

deps: $(DEPS_STAMP) $(LZ4_STAMP)

$(DEPS_STAMP): tools/deps.sh tools/deb-src.sh
	sh tools/deps.sh $(dir $@)

# Order-only on the packages: a change to deps.sh must not re-fetch lz4,
# which leaves a present copy (and its time stamp) alone, so every object
# would otherwise be rebuilt on every make.
$(LZ4_STAMP): tools/fetch-lz4.sh | $(DEPS_STAMP)
	sh tools/fetch-lz4.sh $(LZ4_DIR)
# The other lz4 sources the host builds name come with the same fetch.
$(LZ4_DIR)/lib/xxhash.c: $(LZ4_STAMP)
	@test -f $@

$(BUILD)/obj/boot/efi_main.c.o: EXTRA_CFLAGS := $(EFI_CFLAGS)
# The banner names the git version: rebuild efi_main when it changes.
$(BUILD)/obj/boot/efi_main.c.o: $(BUILD)/version.txt
$(BUILD)/version.txt: FORCE
	@mkdir -p $(dir $@)
	@echo "$(VERSION)" | cmp -s - $@ || echo "$(VERSION)" > $@
.PHONY: FORCE
FORCE:

$(BUILD)/obj/%.c.o: %.c $(LZ4_STAMP)
	@mkdir -p $(dir $@)
	@echo "  CC    $<"
	@$(CC) $(CORE_CFLAGS) $(EXTRA_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/%.S.o: %.S $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	@echo "  AS    $<"
	@$(CC) $(CORE_CFLAGS) -MMD -MP -c $< -o $@

# Third-party: warnings are lz4's business, not ours; -Werror stays off.
# lz4 reads words through packed structs already (LZ4_FORCE_MEMORY_ACCESS=1
# is its default under GCC) and its fixed-size copies are LZ4_memcpy =
# __builtin_memcpy, expanded inline even under -fno-builtin; the calls left
# are variable-length copies (literal runs, the last bytes of a block), for
# which lib/string.c avoids byte loops.
$(BUILD)/obj/lz4.o: $(LZ4_STAMP) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(filter-out -Werror -Wextra -nostdinc,$(CORE_CFLAGS)) $(LZ4_CFLAGS) -c $(LZ4_DIR)/lib/lz4.c -o $@

# lz4's bundled xxHash. Its unused streaming-state allocator is pointed at
# refusing stubs (mm/xxh_shim.c) so the image needs no C library.
# Under the core's -fno-builtin, xxHash's default memory access (memcpy of
# 4 or 8 bytes for every input word) became 78 calls to the out-of-line
# memcpy, most of the cost of a page hash. XXH_FORCE_MEMORY_ACCESS=1 reads
# words through a packed struct (plain unaligned loads, which x86 allows),
# and -fbuiltin (for this object only: it has no memcpy of its own to be
# turned into a call to itself) lets GCC expand its fixed-size state copies
# inline. What stays a call is the streaming API's variable-size buffering,
# which the hypervisor never uses; --no-undefined at the link proves the
# object still needs nothing beyond lib/string.c.
# Unrolling: at -O2 the 32-byte stripe loop is 27 instructions (20 of the
# algorithm, 4 register copies, 3 of loop control), 3,560 per 4 KiB page;
# unrolled 8 times (the default limits stop GCC at 2 for a body this size)
# it is 2,823 (callgrind; Bochs's checksum figure 2,837): the copies fold
# into the renaming between the copies of the body and the loop control is
# paid once per 256 bytes. Bounded to this object (its text grows from 5.3
# to 10.7 KiB); tests/bench/test_hash.c checks its values.
XXH_UNROLL := -funroll-loops --param max-unroll-times=8 \
	--param max-unrolled-insns=1600 --param max-average-unrolled-insns=800
XXH_CFLAGS := -DNDEBUG -DXXH_FORCE_MEMORY_ACCESS=1 -fbuiltin $(XXH_UNROLL) \
	-Dmalloc=hv_xxh_malloc -Dfree=hv_xxh_free
$(BUILD)/obj/xxhash.o: $(LZ4_STAMP) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(filter-out -Werror -Wextra -nostdinc,$(CORE_CFLAGS)) $(XXH_CFLAGS) \
		-c $(LZ4_DIR)/lib/xxhash.c -o $@

$(BUILD)/hv.so: $(CORE_OBJS) linker.ld
	$(LD) -nostdlib -znocombreloc -z noexecstack -T linker.ld -shared -Bsymbolic \
		--no-undefined $(EFI_CRT0) $(CORE_OBJS) -L$(EFI_LIB) -lgnuefi -o $@

$(BUILD)/hv.efi: $(BUILD)/hv.so
	$(OBJCOPY) -j .text -j .reloc -j .rodata -j .data -j .dynamic -j .rela \
		--target efi-app-x86_64 --subsystem=10 $< $@
	@echo "built $@: $$(stat -c %s $@) bytes ($(VERSION))"

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

# ---- guest side: Debian's stock kernel and the test initramfs ------------------
GUEST_KERNEL := $(BUILD)/guest/vmlinuz
GUEST_INITRD := $(BUILD)/guest/initrd.img
GUEST_MODULE := $(BUILD)/guest/overcommithv_balloon.ko
GUEST_DRPROBE := $(BUILD)/guest/drprobe
.PHONY: guest
guest: $(GUEST_KERNEL) $(GUEST_INITRD) $(GUEST_DRPROBE)

# drprobe: a few-KiB guest without Linux that checks per-VM CPU state
# (tests/scenarios/cpu-state); wrapped into a minimal bzImage.
$(GUEST_DRPROBE): tests/guest/drprobe/probe.c tests/guest/drprobe/probe.ld \
		tests/guest/drprobe/mkbzimage.py
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -O2 $(WARN) -ffreestanding -fno-pic -fno-pie -no-pie -nostdlib -static \
		-mno-red-zone -mgeneral-regs-only -fno-stack-protector -fno-asynchronous-unwind-tables \
		-Wl,-T,tests/guest/drprobe/probe.ld -Wl,--build-id=none -Wl,--no-warn-rwx-segments \
		tests/guest/drprobe/probe.c -o $@.elf
	objcopy -O binary $@.elf $@.flat
	python3 tests/guest/drprobe/mkbzimage.py $@.flat $@

$(GUEST_KERNEL): $(DEPS_STAMP) tests/guest/fetch-kernel.sh
	sh tests/guest/fetch-kernel.sh $@

# The balloon driver (guest/linux), built against Debian's headers for that kernel.
$(GUEST_MODULE): $(GUEST_KERNEL) tests/guest/fetch-headers.sh tests/guest/build-module.sh \
		guest/linux/overcommithv_balloon.c guest/linux/Kbuild
	sh tests/guest/build-module.sh $@

$(GUEST_INITRD): $(DEPS_STAMP) tests/guest/build-initramfs.sh tests/guest/memcheck.c tests/guest/kcoreread.c tests/guest/workload.c tests/guest/init \
		$(GUEST_MODULE)
	sh tests/guest/build-initramfs.sh $@

# ---- host tests ------------------------------------------------------------
HOST_CFLAGS := -std=gnu11 -O1 -g $(WARN) -I. -I$(LZ4_DIR)/lib -DHOST_TEST
SAN_FLAGS   := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
MM_SRCS := mm/frame.c mm/compress.c mm/zpool.c mm/hash.c mm/p2m.c mm/p2m_map.c mm/p2m_fault.c mm/p2m_reclaim.c mm/p2m_share.c mm/p2m_balloon.c mm/p2m_sample.c mm/mm.c mm/share.c mm/swap.c mm/balloon.c mm/policy.c mm/policy_balloon.c mm/console.c mm/stats_json.c mm/alerts.c mm/policy_alloc.c mm/policy_admit.c drivers/blk.c arch/pt.c \
	$(LZ4_DIR)/lib/lz4.c $(LZ4_DIR)/lib/xxhash.c
MM_SRCS += mm/trace.c
HOST_LIB_SRCS := boot/config.c lib/fmt.c lib/log.c $(MM_SRCS) drivers/nvme_proto.c \
	vmx/pic.c vmx/pit.c vmx/uart.c vmx/rtc.c vmx/platform.c vmx/linux.c vmx/vm_mem.c vmx/ept_dump.c \
	tests/host/backend.c
HOST_TESTS := test_config test_frame test_fmt test_pt test_compress test_devices test_linux test_p2m \
	test_zpool test_share test_nvme test_swap test_balloon test_balloon_abi test_policy test_refault test_meta \
	test_loglimit test_vmx test_stats test_alerts test_mstate test_alloc
HOST_TESTS += test_admit test_resize
# Sources a test needs beyond HOST_LIB_SRCS.
HOST_EXTRA_test_loglimit := vmx/policy.c
HOST_TESTS += test_trace

# The sources every host test links are compiled once per flavour (plain,
# ASan+UBSan) into objects with header dependencies, and each test links
# them: the same code as compiling them into every test, at a fraction of
# the time (about 30 sources times 50 tests before).
HOST_LIB_OBJS := $(patsubst %.c,$(BUILD)/hostobj/%.o,$(HOST_LIB_SRCS))
HOST_SAN_OBJS := $(patsubst %.c,$(BUILD)/hostobj-san/%.o,$(HOST_LIB_SRCS))
$(BUILD)/hostobj/%.o: %.c $(LZ4_STAMP)
	@mkdir -p $(dir $@)
	@echo "  HOSTCC $@"
	@$(CC) $(HOST_CFLAGS) -MMD -MP -c $< -o $@
$(BUILD)/hostobj-san/%.o: %.c $(LZ4_STAMP)
	@mkdir -p $(dir $@)
	@echo "  HOSTCC $@ (ASan+UBSan)"
	@$(CC) $(HOST_CFLAGS) $(SAN_FLAGS) -MMD -MP -c $< -o $@
-include $(HOST_LIB_OBJS:.o=.d) $(HOST_SAN_OBJS:.o=.d) $(wildcard $(BUILD)/host/*.d $(BUILD)/host-san/*.d)

define host_test
$(BUILD)/host/$(1): tests/host/$(1).c $(HOST_LIB_OBJS) $(HOST_EXTRA_$(1)) tests/host/backend.h $(LZ4_STAMP)
	@mkdir -p $$(dir $$@)
	@echo "  HOSTCC $$@"
	@$(CC) $(HOST_CFLAGS) -MMD -MP tests/host/$(1).c $(HOST_LIB_OBJS) $(HOST_EXTRA_$(1)) -lcmocka -o $$@
$(BUILD)/host-san/$(1): tests/host/$(1).c $(HOST_SAN_OBJS) $(HOST_EXTRA_$(1)) tests/host/backend.h $(LZ4_STAMP)
	@mkdir -p $$(dir $$@)
	@echo "  HOSTCC $$@ (ASan+UBSan)"
	@$(CC) $(HOST_CFLAGS) $(SAN_FLAGS) -MMD -MP tests/host/$(1).c $(HOST_SAN_OBJS) $(HOST_EXTRA_$(1)) -lcmocka -o $$@
endef
$(foreach t,$(HOST_TESTS),$(eval $(call host_test,$(t))))
$(foreach t,test_balloon test_balloon_abi,$(BUILD)/host/$(t) $(BUILD)/host-san/$(t)): tests/host/balloon_fixture.h

HOST_BINS := $(addprefix $(BUILD)/host/,$(HOST_TESTS)) $(addprefix $(BUILD)/host-san/,$(HOST_TESTS))


# ---- simulator and fuzzer (tests/sim) ----------------------------------------
SIM_SRCS := tests/sim/model.c $(MM_SRCS) lib/fmt.c lib/log.c
SIM_DEPS := $(SIM_SRCS) tests/sim/model.h $(wildcard mm/*.h arch/pt.h) $(LZ4_STAMP)
SIM_ACCESSES ?= 10000000
FUZZ_SECONDS ?= 30
FUZZ_LZ4_SECONDS ?= 20
FUZZ_HC_SECONDS ?= 20

$(BUILD)/sim: tests/sim/sim.c $(SIM_DEPS)
	@mkdir -p $(dir $@)
	@echo "  HOSTCC $@"
	@$(CC) -std=gnu11 -O2 -g $(WARN) -I. -I$(LZ4_DIR)/lib -DHOST_TEST tests/sim/sim.c $(SIM_SRCS) -lm -o $@

$(BUILD)/sim-san: tests/sim/sim.c $(SIM_DEPS)
	@mkdir -p $(dir $@)
	@echo "  HOSTCC $@ (ASan+UBSan)"
	@$(CC) -std=gnu11 -O1 -g $(WARN) $(SAN_FLAGS) -I. -I$(LZ4_DIR)/lib -DHOST_TEST tests/sim/sim.c $(SIM_SRCS) -lm -o $@

$(BUILD)/fuzz_p2m: tests/sim/fuzz.c $(SIM_DEPS)
	@mkdir -p $(dir $@)
	@echo "  CLANG  $@ (libFuzzer+ASan+UBSan)"
	@clang -std=gnu11 -O1 -g $(WARN) -fsanitize=fuzzer,address,undefined \
		-fno-sanitize-recover=all -I. -I$(LZ4_DIR)/lib -DHOST_TEST tests/sim/fuzz.c $(SIM_SRCS) -o $@

# The balloon hypercalls from hostile guests on the simulator's machine.
$(BUILD)/fuzz_hc: tests/sim/fuzz_hc.c $(SIM_DEPS)
	@mkdir -p $(dir $@)
	@echo "  CLANG  $@ (libFuzzer+ASan+UBSan)"
	@clang -std=gnu11 -O1 -g $(WARN) -fsanitize=fuzzer,address,undefined \
		-fno-sanitize-recover=all -I. -I$(LZ4_DIR)/lib -DHOST_TEST tests/sim/fuzz_hc.c $(SIM_SRCS) -o $@

# LZ4 decompression of arbitrary bytes through the pool's wrapper: never an
# overrun (ASan), never a "success" that is not exactly one page.
$(BUILD)/fuzz_lz4: tests/sim/fuzz_lz4.c mm/compress.c mm/compress.h $(LZ4_STAMP)
	@mkdir -p $(dir $@)
	@echo "  CLANG  $@ (libFuzzer+ASan+UBSan)"
	@clang -std=gnu11 -O1 -g $(WARN) -fsanitize=fuzzer,address,undefined \
		-fno-sanitize-recover=all -I. -I$(LZ4_DIR)/lib -DHOST_TEST tests/sim/fuzz_lz4.c \
		mm/compress.c lib/fmt.c lib/log.c $(LZ4_DIR)/lib/lz4.c -o $@

SIM_BINS := $(BUILD)/sim $(BUILD)/sim-san $(BUILD)/fuzz_p2m $(BUILD)/fuzz_lz4 $(BUILD)/fuzz_hc
# Each is one test for the runner, judged by its exit status.
CMD_sim     := sim, $(SIM_ACCESSES) accesses=$(BUILD)/sim --accesses $(SIM_ACCESSES)
CMD_sim_san := sim under ASan/UBSan, 1000000 accesses=$(BUILD)/sim-san --seed 7 --accesses 1000000
CMD_fuzz    := fuzz_p2m for $(FUZZ_SECONDS) s=mkdir -p $(BUILD)/fuzz-corpus && $(BUILD)/fuzz_p2m -max_total_time=$(FUZZ_SECONDS) -seed=1 -max_len=4096 $(BUILD)/fuzz-corpus
CMD_fuzz_lz4 := fuzz_lz4 for $(FUZZ_LZ4_SECONDS) s=mkdir -p $(BUILD)/fuzz-lz4-corpus && $(BUILD)/fuzz_lz4 -max_total_time=$(FUZZ_LZ4_SECONDS) -seed=1 -max_len=8192 $(BUILD)/fuzz-lz4-corpus
CMD_fuzz_hc := fuzz_hc for $(FUZZ_HC_SECONDS) s=mkdir -p $(BUILD)/fuzz-hc-corpus && $(BUILD)/fuzz_hc -max_total_time=$(FUZZ_HC_SECONDS) -seed=1 -max_len=4096 $(BUILD)/fuzz-hc-corpus
# The rig's own judgement: a scenario cannot drop the default forbids.
CMD_rig     := scenario rig unit tests=python3 tests/rig/test_rig.py
# The @hvstat lines read back: schema against docs/stats.md, hvtop's CSV on a
# recorded log, its panel live in tmux (tests/rig/test_hvtop.py).
CMD_hvtop   := hvstat schema, hvtop CSV and live panel in tmux=python3 tests/rig/test_hvtop.py
# tools/experiment.py on synthetic lines and reports (no emulator), and one
# short experiment in Bochs whose report must render in headless Chromium.
CMD_exp_unit := experiment tool unit tests=python3 tests/tools/test_experiment.py
CMD_experiment := experiment pool-workload, run mixed, report checked in Chromium=python3 tools/experiment.py pool-workload --run mixed --check
CMD_deb_src := deb-src entry from sample apt configurations=sh tests/tools/test_deb_src.sh
# Eight VMs of 256 MiB on a 48 MiB machine, at the watermark: the worst
# single fault's work must stay under the bound the simulator derives.
CMD_sim_8vm := sim, 8 large VMs at the watermark, worst single fault=$(BUILD)/sim --vms 8 --gfns 65536 --frames 12288 --ws 2048 --limit 1400 --scan 8192 --accesses 400000 --check-every 200000 --edges-optional
SIM_CMDS := $(foreach c,rig hvtop exp_unit sim sim_san sim_8vm fuzz fuzz_lz4 fuzz_hc deb_src,--cmd "$(CMD_$(c))")

# The transition trace's host side (docs/trace.md): decodes the dumps on a
# serial log and replays them against mm/; its self-test makes traces with
# the real mm/ on the simulator and checks clean, overwritten, damaged and
# forged ones. The swap scenario runs it on its own log.
$(BUILD)/replay: tests/sim/replay.c $(SIM_DEPS)
	@mkdir -p $(dir $@)
	@echo "  HOSTCC $@"
	@$(CC) -std=gnu11 -O2 -g $(WARN) -I. -I$(LZ4_DIR)/lib -DHOST_TEST tests/sim/replay.c $(SIM_SRCS) -lm -o $@
SIM_BINS += $(BUILD)/replay
# The hook's cost: replay --bench with it, and with it compiled out.
$(BUILD)/replay-nohook: tests/sim/replay.c $(SIM_DEPS)
	@mkdir -p $(dir $@)
	@echo "  HOSTCC $@"
	@$(CC) -std=gnu11 -O2 -g $(WARN) -I. -I$(LZ4_DIR)/lib -DHOST_TEST -DTRACE_NO_HOOK tests/sim/replay.c $(SIM_SRCS) -lm -o $@
# The swap scenario's host_check runs build/replay on its serial log.
scenario: $(BUILD)/replay
.PHONY: bench-trace
bench-trace: $(BUILD)/replay $(BUILD)/replay-nohook
	$(BUILD)/replay-nohook --bench 4000000
	$(BUILD)/replay --bench 4000000
CMD_replay := trace replay self-test=$(BUILD)/replay --selftest $(BUILD)/replay-selftest
SIM_CMDS += --cmd "$(CMD_replay)"
CMD_hvtrace := trace decoder tools/hvtrace.py=python3 tests/tools/test_hvtrace.py
SIM_CMDS += --cmd "$(CMD_hvtrace)"

# ---- the image's own objects in host programs (tests/bench/shipped.h) --------
# Copies of build/obj objects with only their string symbols renamed
# (memcpy -> hv_memcpy, ...): the benchmarks and test_string run the image's
# machine code, while the host program around them keeps libc.
SHIPPED_NAMES := lz4.o xxhash.o mm/hash.c.o mm/compress.c.o mm/xxh_shim.c.o lib/string.c.o
SHIPPED_OBJS  := $(addprefix $(BUILD)/shipped/,$(SHIPPED_NAMES))
$(BUILD)/shipped/%: $(BUILD)/obj/% tests/bench/shipped.syms
	@mkdir -p $(dir $@)
	objcopy --redefine-syms=tests/bench/shipped.syms $< $@
# The host programs' own copies of what the shipped objects replace.
SIM_SRCS_SHIPPED := $(filter-out mm/hash.c mm/compress.c $(LZ4_DIR)/lib/lz4.c \
	$(LZ4_DIR)/lib/xxhash.c,$(SIM_SRCS))

# lib/string.c as shipped, against libc (plain and under ASan/UBSan: the
# object itself is not instrumented, the test's buffers are).
$(BUILD)/host/test_string: tests/bench/test_string.c tests/bench/shipped.h $(BUILD)/shipped/lib/string.c.o
	@mkdir -p $(dir $@)
	@echo "  HOSTCC $@"
	@$(CC) $(HOST_CFLAGS) $< $(BUILD)/shipped/lib/string.c.o -lcmocka -o $@
$(BUILD)/host-san/test_string: tests/bench/test_string.c tests/bench/shipped.h $(BUILD)/shipped/lib/string.c.o
	@mkdir -p $(dir $@)
	@echo "  HOSTCC $@ (ASan+UBSan)"
	@$(CC) $(HOST_CFLAGS) $(SAN_FLAGS) $< $(BUILD)/shipped/lib/string.c.o -lcmocka -o $@
HOST_BINS += $(BUILD)/host/test_string $(BUILD)/host-san/test_string
# mm/hash.c over xxhash.o as shipped (unrolled, XXH_CFLAGS) against xxHash
# built with host flags.
TEST_HASH_OBJS := $(BUILD)/shipped/mm/hash.c.o $(BUILD)/shipped/xxhash.o $(BUILD)/shipped/mm/xxh_shim.c.o \
	$(BUILD)/shipped/lib/string.c.o
$(BUILD)/host/test_hash: tests/bench/test_hash.c $(TEST_HASH_OBJS) $(LZ4_DIR)/lib/xxhash.c
	@mkdir -p $(dir $@)
	@echo "  HOSTCC $@"
	@$(CC) $(HOST_CFLAGS) $< $(TEST_HASH_OBJS) -lcmocka -o $@
$(BUILD)/host-san/test_hash: tests/bench/test_hash.c $(TEST_HASH_OBJS) $(LZ4_DIR)/lib/xxhash.c
	@mkdir -p $(dir $@)
	@echo "  HOSTCC $@ (ASan+UBSan)"
	@$(CC) $(HOST_CFLAGS) $(SAN_FLAGS) $< $(TEST_HASH_OBJS) -lcmocka -o $@
HOST_BINS += $(BUILD)/host/test_hash $(BUILD)/host-san/test_hash

# The benchmarks link the shipped lz4, xxHash, hash, compress and string
# objects; the pool, scanner and simulator around them are host-built
# (-O2, libc's mem*), and each benchmark prints that split.
BENCH_CFLAGS := -std=gnu11 -O2 -g $(WARN) -I. -I$(LZ4_DIR)/lib -DHOST_TEST
$(BUILD)/bench_zpool: tests/bench/bench_zpool.c tests/bench/shipped.h $(SIM_DEPS) $(SHIPPED_OBJS)
	@mkdir -p $(dir $@)
	@echo "  HOSTCC $@"
	@$(CC) $(BENCH_CFLAGS) tests/bench/bench_zpool.c $(SIM_SRCS_SHIPPED) $(SHIPPED_OBJS) -lm -o $@

$(BUILD)/bench_share: tests/bench/bench_share.c tests/bench/shipped.h $(SIM_DEPS) $(SHIPPED_OBJS)
	@mkdir -p $(dir $@)
	@echo "  HOSTCC $@"
	@$(CC) $(BENCH_CFLAGS) tests/bench/bench_share.c $(SIM_SRCS_SHIPPED) $(SHIPPED_OBJS) -lm -o $@

# Per-path primitives on the shipped objects beside libc baselines.
$(BUILD)/bench_hot: tests/bench/bench_hot.c tests/bench/shipped.h $(SHIPPED_OBJS) $(LZ4_STAMP)
	@mkdir -p $(dir $@)
	@echo "  HOSTCC $@"
	@$(CC) $(BENCH_CFLAGS) tests/bench/bench_hot.c $(SHIPPED_OBJS) lib/fmt.c lib/log.c -o $@
BENCH_BINS := $(BUILD)/bench_zpool $(BUILD)/bench_share $(BUILD)/bench_hot

.PHONY: sim fuzz bench bench-fault bench-zpool bench-share bench-swap bench-balloon bench-policy
# Every benchmark, one table: build/bench/table.txt and table.json. Reuses
# scenario logs newer than build/hv.efi and runs the others (Bochs: long).
# Not part of make test. BENCH_ARGS=--no-bochs reads only existing logs.
bench: $(BUILD)/hv.efi guest $(BENCH_BINS) $(BUILD)/sim
	python3 tests/rig/bench.py $(BENCH_ARGS)
bench-balloon: $(BUILD)/hv.efi guest
	python3 tests/rig/bench_balloon.py
bench-swap: $(BUILD)/hv.efi guest
	python3 tests/rig/bench_swap.py
bench-share: $(BUILD)/hv.efi guest $(BUILD)/bench_share
	python3 tests/rig/bench_share.py
bench-zpool: $(BUILD)/hv.efi guest $(BUILD)/bench_zpool
	python3 tests/rig/bench_zpool.py
bench-fault: $(BUILD)/hv.efi guest $(BUILD)/sim
	python3 tests/rig/bench_fault.py
# Background reclaim against reclaim_cpu = 0 on the compress and swap
# workloads (about 40 minutes of Bochs; not part of make test).
bench-policy: $(BUILD)/hv.efi guest
	python3 tests/rig/bench_policy.py
sim: $(BUILD)/sim
	$(BUILD)/sim --accesses $(SIM_ACCESSES)
fuzz: $(BUILD)/fuzz_p2m
	mkdir -p $(BUILD)/fuzz-corpus && $(BUILD)/fuzz_p2m -max_total_time=$(FUZZ_SECONDS) $(BUILD)/fuzz-corpus

# ---- emulator scenarios ----------------------------------------------------
SCENARIOS := $(notdir $(patsubst %/,%,$(dir $(wildcard tests/scenarios/*/scenario))))

test-host: $(HOST_BINS) $(SIM_BINS)
	python3 tests/rig/run_tests.py $(HOST_BINS) $(SIM_CMDS)

scenario: $(BUILD)/hv.efi guest
	@test -n "$(NAME)" || { echo "usage: make scenario NAME=<one of: $(SCENARIOS)>"; exit 2; }
	python3 tests/rig/scenario.py $(NAME)

# The demo: overcommitted 2.1:1, every technique at work; the log streams to
# a terminal (a panel line per stats period without one), then its report.
run: $(BUILD)/hv.efi guest
	python3 tools/experiment.py --scenario demo

# A declarative experiment (experiments/NAME/experiment.toml): its runs in
# Bochs, CSV, plots and build/experiments/NAME/report.html. Long; not in
# make test (one run of pool-workload is). EXPERIMENT_ARGS=--reuse redraws.
EXPERIMENTS := $(notdir $(patsubst %/,%,$(dir $(wildcard experiments/*/experiment.toml))))
experiment: $(BUILD)/hv.efi guest
	@test -n "$(NAME)" || { echo "usage: make experiment NAME=<one of: $(EXPERIMENTS)>"; exit 2; }
	python3 tools/experiment.py $(NAME) $(EXPERIMENT_ARGS)

test: $(BUILD)/hv.efi guest $(HOST_BINS) $(SIM_BINS)
	python3 tests/rig/run_tests.py --jobs 2 $(HOST_BINS) $(SIM_CMDS) --cmd "$(CMD_experiment)" \
		-- $(filter-out demo,$(SCENARIOS))

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD)/obj $(BUILD)/host $(BUILD)/host-san $(BUILD)/hv.so $(BUILD)/hv.efi $(BUILD)/scenarios
