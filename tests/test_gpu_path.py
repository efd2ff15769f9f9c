"""The CUDA path, checked on a machine without a GPU (issue 43): the backend follows the run's
device, the RNNs run outside CUDA autocast, scoring keeps the run's precision, a member's dropout
on a GPU draws from its own checkpointed stream, the optimizer is fused on CUDA, and every
family's forward stays on the (fake) CUDA device. Fake CUDA tensors (FakeTensorMode) carry
devices and dtypes without a GPU; forward passes only (autograd on them needs a CUDA build)."""

import os
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch._subclasses.fake_tensor import FakeTensorMode

from multitudes.config.genome import Genome
from multitudes.errors import UserError
from multitudes.models import build
from multitudes.runs import distributed
from multitudes.runs.device import scoring_precision, uses_bf16

FAMILIES = ("gpt", "looped", "lstm", "gru", "ssm")


def genome(family: str, **kw) -> Genome:
    base = dict(family=family, d_model=32, n_layer=2, n_head=2, d_ff=64, context=32, lr=1e-2,
                warmup=0, seed=3)
    if family == "looped":
        base.update(n_layer=1, n_loop=2)
    return Genome(**{**base, **kw})


def on_fake_cuda(g: Genome):
    """The member's model with fake CUDA weights (no GPU, no memory), and the fake mode."""
    with torch.device("meta"):
        model = build(g)
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    with mode:
        model = model.to_empty(device="cuda")
    return model, mode


@contextmanager
def cuda_autocast():
    """bf16 autocast on CUDA, as `torch.autocast("cuda")` sets it: that context refuses to start
    without a GPU ("Disabling autocast"), so its state is set here by hand."""
    before = torch.is_autocast_enabled("cuda"), torch.get_autocast_dtype("cuda")
    torch.set_autocast_enabled("cuda", True)
    torch.set_autocast_dtype("cuda", torch.bfloat16)
    try:
        yield
    finally:
        torch.set_autocast_enabled("cuda", before[0])
        torch.set_autocast_dtype("cuda", before[1])


class Seen(Exception):
    """Raised by a hook once it has seen what it looks for (the GRU cell has no fake kernel)."""


# The GRU's cell has no fake kernel on a CPU build (aten::_thnn_fused_gru_cell); its module is
# the LSTM's (models/rnn.py), and its recurrence's device and dtype are checked below.
@pytest.mark.parametrize("family", [f for f in FAMILIES if f != "gru"])
def test_every_family_forward_stays_on_the_device(family):
    """Logits on the device the weights are on, in fp32 (the losses' dtype). Under autocast a
    CPU build aborts when it would cast a fake CUDA weight, so the bf16 kernels are the device
    check's to see (benchmarks/device_check.sh); the RNN's exclusion is checked below."""
    model, mode = on_fake_cuda(genome(family))
    with mode, torch.no_grad():
        z = model(torch.zeros(2, 32, dtype=torch.long, device="cuda"))
    assert z.device.type == "cuda" and z.dtype == torch.float32 and z.shape == (2, 32, 256)


@pytest.mark.parametrize("family", ["lstm", "gru"])
def test_the_recurrence_runs_outside_cuda_autocast_in_fp32(family):
    """cuDNN's RNN under autocast runs in fp16, whatever dtype the autocast asks for: the
    recurrence is called with autocast off and fp32 inputs (its state follows)."""
    model, mode = on_fake_cuda(genome(family))
    seen = {}

    def look(module, args):
        seen.update(autocast=torch.is_autocast_enabled("cuda"), dtype=args[0].dtype,
                    device=args[0].device.type)
        raise Seen  # before the head, whose cast a CPU build cannot fake
    model.rnn.register_forward_pre_hook(look)
    with mode, torch.no_grad(), cuda_autocast(), pytest.raises(Seen):
        assert torch.is_autocast_enabled("cuda")
        model(torch.zeros(2, 32, dtype=torch.long, device="cuda"))
    assert seen == {"autocast": False, "dtype": torch.float32, "device": "cuda"}


def test_on_the_cpu_the_rnn_keeps_the_runs_autocast():
    """The exclusion is CUDA's alone: a bf16 run on the CPU runs its RNN as before."""
    model = build(genome("lstm"))
    seen = []
    model.rnn.register_forward_pre_hook(
        lambda module, args: seen.append(torch.is_autocast_enabled("cpu")))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(torch.zeros(2, 32, dtype=torch.long))
    assert seen == [True]


class FakeDist:
    """torch.distributed's joining, recorded (no process group is made)."""

    def __init__(self):
        self.backend = None

    def init_process_group(self, backend, timeout):
        self.backend = backend


@pytest.fixture
def two_ranks(monkeypatch):
    fake, devices = FakeDist(), []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.delenv("TORCH_NCCL_BLOCKING_WAIT", raising=False)
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", fake.init_process_group)
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", devices.append)
    return fake, devices


def test_the_backend_follows_the_device_the_run_trains_on(two_ranks, monkeypatch):
    """A CPU run on a GPU machine joins over gloo and touches no GPU; a CUDA run over NCCL, each
    rank on its own GPU, with blocking waits (a failed collective raises where it is called)."""
    fake, devices = two_ranks
    group = distributed.connect(device="cpu")
    assert fake.backend == "gloo" and devices == [] and group.world == 2
    assert "TORCH_NCCL_BLOCKING_WAIT" not in os.environ
    for device in ("auto", "cuda"):
        distributed.connect(device=device)
        assert fake.backend == "nccl" and devices[-1] == 1
        assert os.environ["TORCH_NCCL_BLOCKING_WAIT"] == "1"
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(UserError, match="LOCAL_RANK 1: this machine has 1 GPU"):
        distributed.connect(device="cuda")


def test_scoring_keeps_the_runs_precision(monkeypatch):
    """An fp32 run is scored in fp32 on a GPU too; `auto` and bf16 as before (bf16 on CUDA,
    fp32 on the CPU whatever the run trains in)."""
    assert not uses_bf16("cuda", scoring_precision("fp32"))
    assert uses_bf16("cuda", scoring_precision("auto")) and uses_bf16("cuda",
                                                                      scoring_precision("bf16"))
    assert not uses_bf16("cpu", scoring_precision("bf16"))
    from multitudes.config import files as config_files
    from multitudes.data.corpora import resolve
    from multitudes.data.splits import load_splits
    from multitudes.training import scoring

    asked = []
    monkeypatch.setattr(scoring, "byte_log2probs",
                        lambda *a, **kw: asked.append(kw["precision"]))
    for precision in ("fp32", "bf16", "auto"):
        cfg = config_files.load("debug", None, [f"train.precision='{precision}'"])
        scorer = scoring.Scoring(cfg, load_splits(resolve("sample")), torch.device("cpu"),
                                 keep_best=False)
        scorer.log2probs(None, scorer.dev)
    assert asked == ["fp32", "auto", "auto"]


class FakeGPU:
    """torch.cuda's generator functions, on one integer state."""

    def __init__(self):
        self.state = torch.tensor([100])

    def get_rng_state(self, device):
        return self.state.clone()

    def set_rng_state(self, state, device):
        self.state = state.clone()

    def manual_seed(self, seed):
        self.state = torch.tensor([seed])


def test_a_members_dropout_on_a_gpu_draws_from_its_own_stream(monkeypatch):
    """Member.draws on a GPU: the member's state swapped into the GPU's generator and back, its
    first draw seeded from its genome; the generator outside is left as it was."""
    from multitudes.population.member import Member

    gpu = FakeGPU()
    monkeypatch.setattr(torch, "get_device_module", lambda kind: gpu)
    model, _ = on_fake_cuda(genome("gpt", dropout=0.1, seed=7))
    m = Member("m0", genome("gpt", dropout=0.1, seed=7), model, None,
               torch.Generator().manual_seed(7).get_state())
    for expected in (8, 9):
        with m.draws():
            gpu.state = gpu.state + 1  # a draw advances the generator
        assert m.device_rng_state.tolist() == [expected] and gpu.state.tolist() == [100]


def test_a_members_gpu_stream_is_in_its_checkpoint(tmp_path):
    """The GPU stream round-trips through the arm's checkpoint (a resume with dropout > 0 on a
    GPU draws what an uninterrupted run draws); on the CPU no such tensor is written."""
    from multitudes.config import files as config_files
    from multitudes.data.corpora import resolve
    from multitudes.data.splits import load_splits
    from multitudes.runs.files import RunFiles
    from multitudes.training.arms import ArmContext
    from multitudes.training.protocols import plan

    cfg = config_files.load("debug", None, ["evolution.every=0", "train.real_bytes=4096"])
    splits = load_splits(resolve("sample"))

    def runner():
        ctx = ArmContext(cfg, splits, RunFiles(tmp_path, progress=False))
        return plan("train", cfg)[0].build(ctx, {})
    first = runner()
    first.run_until(2048)
    assert not any("device" in t for t in _rng_tensors(tmp_path))
    first.pop.members[1].device_rng_state = torch.tensor([1, 2, 3], dtype=torch.uint8)
    first.save()
    second = runner()
    assert second.try_resume()
    assert second.pop.members[1].device_rng_state.tolist() == [1, 2, 3]
    assert second.pop.members[0].device_rng_state is None


def _rng_tensors(run: Path) -> list[str]:
    from safetensors import safe_open
    names = []
    for path in (run / "checkpoints").rglob("*.rng.safetensors"):
        with safe_open(str(path), "pt") as f:
            names += list(f.keys())
    return names


def test_the_optimizer_is_fused_on_cuda_only():
    from multitudes.population.schedule import fused_on, make_optimizer
    assert fused_on(torch.device("cuda")) == {"fused": True}
    assert fused_on(torch.device("cpu")) == {}
    assert not make_optimizer(build(genome("gpt")), genome("gpt")).defaults.get("fused")


def test_a_step_reads_its_losses_back_in_one_transfer():
    """The population step's losses: one stacked copy to the host, the same floats as `.item()`
    of each (float32 and bf16 alike)."""
    from multitudes.population.transfers import host_values
    a, b = torch.tensor(1.2345678, dtype=torch.float32), torch.tensor(3.5, dtype=torch.bfloat16)
    assert host_values([[None, a, b], [], [b, None, a]]) == [
        [None, a.item(), b.item()], [None, None, None], [b.item(), None, a.item()]]


def _host_questions(monkeypatch) -> list[str]:
    """Every way the package's code brings a tensor's value to Python in a step, counted:
    `bool()`, `.item()`, `.tolist()` (host_values' one stacked copy is one `.tolist()`). The
    CPU AdamW's `.item()` of its own step counter is not counted: it is a CPU tensor on every
    device (and the fused AdamW a GPU run takes keeps it on the device)."""
    import sys

    asked = []

    def counting(name, real):
        def call(t, *a):
            if "multitudes" in sys._getframe(1).f_code.co_filename:
                asked.append(name)
            return real(t, *a)
        return call

    for name in ("__bool__", "item", "tolist"):
        monkeypatch.setattr(torch.Tensor, name, counting(name, getattr(torch.Tensor, name)))
    return asked


def _population(*sets):
    from multitudes.config import files as config_files
    from multitudes.population.population import Population
    from multitudes.runs.distributed import Group

    cfg = config_files.load("debug", None, list(sets))
    pop = Population.found(cfg.members, cfg.social, cfg.train, 10, torch.device("cpu"), Group())
    return pop, torch.randint(0, 256, (cfg.train.batch_size, cfg.context + 1))


def test_a_step_asks_the_host_once_alone_and_twice_listening(monkeypatch):
    """Every finite check (each member's logits, loss and gradients) stays on the device and
    crosses with the losses in the step's one transfer: members alone ask the host one
    question a step whatever K (they asked three per member, then one per member); members
    that listen ask two (their health before the consensus, then the losses)."""
    pop, batch = _population("social.channel='none'")
    assert len(pop.members) >= 2
    asked = _host_questions(monkeypatch)
    pop.step(batch)
    assert asked == ["tolist"]
    monkeypatch.undo()
    pop, batch = _population()
    asked = _host_questions(monkeypatch)
    pop.step(batch)
    assert asked == ["tolist", "tolist"]


def test_a_member_alone_whose_logits_are_not_finite_is_reborn_and_its_step_discarded():
    """Its logits read with the losses: the same reset, reason and FLOPs as a check before the
    step gave (the member's step is discarded with its weights)."""
    pop, batch = _population("social.channel='none'")
    sick = pop.members[0]
    healthy_flops = pop.members[1].flops
    with torch.no_grad():
        next(sick.model.parameters()).fill_(float("nan"))
    pop.step(batch)
    assert [e["reason"] for e in pop.events] == ["non-finite logits"]
    assert sick.resets == 1 and sick.steps == 0 and sick.flops == 0
    assert pop.members[1].flops > healthy_flops and pop.members[1].resets == 0
    assert all(torch.isfinite(p).all() for p in sick.model.parameters())


class _FakeStream:
    """A CUDA stream as on_streams uses it, recording the order of what it is asked."""

    def __init__(self, name, log):
        self.name, self.log = name, log

    def wait_stream(self, other):
        self.log.append(("wait", self.name, other.name))


def test_members_queue_their_kernels_on_streams_of_their_own(monkeypatch):
    """On a GPU each member's work is queued on its own stream: the stream waits for what the
    current stream queued (the batch, the consensus), the inputs are marked as read there, and
    the current stream waits for every member's stream before anything reads the results."""
    from multitudes.population import side_by_side

    log = []
    current = _FakeStream("current", log)

    class Queued:
        def __init__(self, stream):
            self.stream = stream

        def __enter__(self):
            log.append(("enter", self.stream.name))

        def __exit__(self, *exc):
            log.append(("exit", self.stream.name))

    class Input:
        def record_stream(self, stream):
            log.append(("record", stream.name))

    monkeypatch.setattr(torch.cuda, "current_stream", lambda *a: current)
    monkeypatch.setattr(torch.cuda, "stream", Queued)
    streams = [_FakeStream("s0", log), _FakeStream("s1", log)]
    out = side_by_side.on_streams(lambda i: log.append(("run", i)) or 10 * i, [0, 1], streams,
                                  (Input(),))
    assert out == [0, 10]
    assert log == [("wait", "s0", "current"), ("record", "s0"), ("enter", "s0"), ("run", 0),
                   ("exit", "s0"), ("wait", "s1", "current"), ("record", "s1"),
                   ("enter", "s1"), ("run", 1), ("exit", "s1"),
                   ("wait", "current", "s0"), ("wait", "current", "s1")]


def test_a_population_on_a_gpu_steps_its_members_on_one_stream_each(monkeypatch):
    """Population.each picks the streams on a CUDA device (one per member, kept from step to
    step), threads on the CPU, and neither when side by side is switched off."""
    from multitudes.population import side_by_side

    pop, _ = _population()
    made, calls = [], []
    monkeypatch.setattr(torch.cuda, "Stream", lambda device: made.append(device) or
                        _FakeStream(f"s{len(made)}", []))
    monkeypatch.setattr(side_by_side, "on_streams", lambda fn, items, streams, inputs:
                        calls.append([s.name for s in streams]) or [fn(i) for i in items])
    assert pop.each(lambda i: i, [0, 1]) == [0, 1] and not calls  # the CPU: threads
    pop.device = torch.device("cuda", 0)
    assert pop.each(lambda i: i + 1, [0, 1]) == [1, 2]
    assert pop.each(lambda i: i, [0, 1]) == [0, 1]
    assert calls == [["s1", "s2"], ["s1", "s2"]] and made == [torch.device("cuda", 0)] * 2
    pop.train = replace(pop.train, side_by_side=False)
    assert pop.each(lambda i: i, [0, 1]) == [0, 1] and len(calls) == 2


def test_train_compile_compiles_each_training_model_once_in_place(monkeypatch):
    """`train.compile`: a member's model is compiled on its first training step (forward, and
    a stateful member's decode), once, in place: its parameters and state_dict keys are the
    model's own. torch.compile is stubbed here (a real compile takes a minute on this CPU:
    benchmarks/throughput.py measures it)."""
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda fn, *a, **k: compiled.append(fn) or fn)
    pop, batch = _population("train.compile=true")
    keys = [list(m.model.state_dict()) for m in pop.members]
    pop.step(batch)
    pop.step(batch, continues=True)
    stateful = sum(m.stateful for m in pop.members)
    assert len(compiled) == len(pop.members) + stateful  # the forwards, the decodes, once
    assert [list(m.model.state_dict()) for m in pop.members] == keys
    pop.members[0].reborn(pop.device, 0)  # a new model: compiled on its first step
    pop.step(batch)
    assert len(compiled) == len(pop.members) + stateful + 1 + pop.members[0].stateful
    monkeypatch.undo()
    pop, batch = _population()
    pop.step(batch)
    assert all(getattr(m.model, "_compiled_call_impl", None) is None for m in pop.members)
