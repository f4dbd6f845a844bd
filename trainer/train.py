"""The training loop: config -> models, losses, data -> steps -> run directory.

One ``Trainer`` object owns the generator (and optional discriminator), their optimizers, the EMA
copy of the generator and the schedule; ``train(cfg, run_dir)`` drives it. Schedules:
  pixel  generator with its pixel/perceptual losses only
  gan    generator + adversarial term from step 0; the discriminator is updated every
         ``schedule.g_per_d`` generator steps (the CelebA seed: 3)
  nogan  generator alone for ``nogan_g_steps``, discriminator alone for ``nogan_d_steps``, then
         gan (the JPEG seed's NoGAN)
The same command runs under ``torchrun``: each rank takes its slice of every global batch and
DistributedDataParallel averages the gradients (gloo on CPU, nccl on GPU).
"""
import copy
import json
import math
import os
import random
import signal
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from restore.runtime.errors import ConfigError, InputError

from .checkpoint import init_weights, load_checkpoint, save_checkpoint
from .config import save_config
from .losses import build_adversarial_loss, build_generator_loss
from .models import build_model, count_parameters
from .run_dir import RunDir, check_new_run_dir

# ---------------------------------------------------------------- distributed helpers


def dist_setup():
    """Join the process group when started by torchrun; return (rank, world_size, device)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def unwrap(model):
    return model.module if isinstance(model, DistributedDataParallel) else model


# ---------------------------------------------------------------- schedule


def lr_factor(step, total, sched, time_fraction=0.0):
    """Linear warm-up, then cosine decay to ``min_lr_ratio`` (or constant). ``time_fraction``
    (of a wall-clock budget) advances the cosine when it is further along than the steps."""
    warmup = int(sched.get("warmup", 0))
    if warmup and step < warmup:
        return (step + 1) / warmup
    if sched["lr"] == "constant":
        return 1.0
    progress = min(1.0, max((step - warmup) / max(1, total - warmup), time_fraction))
    floor = float(sched.get("min_lr_ratio", 0.0))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def phase_of(step, sched):
    """Which networks train at ``step``: "g" (generator, no adversarial term), "d"
    (discriminator alone) or "gan"."""
    kind = sched["type"]
    if kind == "pixel":
        return "g"
    if kind == "nogan":
        g_steps, d_steps = int(sched["nogan_g_steps"]), int(sched["nogan_d_steps"])
        if step < g_steps:
            return "g"
        if step < g_steps + d_steps:
            return "d"
    return "gan"


class EMA:
    """Exponential moving average of the generator's parameters (buffers are copied).

    The decay ramps up as (1 + step) / (10 + step) until it reaches ``decay``: with a fixed 0.998
    the random initial weights still held 37% of the average after 500 steps."""

    def __init__(self, model, decay):
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model, step):
        decay = min(self.decay, (1 + step) / (10 + step))
        for e, p in zip(self.model.parameters(), model.parameters()):
            e.lerp_(p.detach(), 1.0 - decay)
        for e, b in zip(self.model.buffers(), model.buffers()):
            e.copy_(b)


# ---------------------------------------------------------------- data


class GlobalBatches(torch.utils.data.Sampler):
    """Yields, for each step from ``start``, this rank's slice of the global batch: indices
    ``step*B + rank*b ... step*B + (rank+1)*b - 1`` (mod len). Items are determined by their
    index, so the data stream is the same for any number of processes and resumes exactly."""

    def __init__(self, length, global_batch, rank, world, start, steps):
        self.length, self.batch, self.rank, self.world = length, global_batch, rank, world
        self.start, self.steps = start, steps
        self.local = global_batch // world

    def __iter__(self):
        for step in range(self.start, self.steps):
            first = step * self.batch + self.rank * self.local
            yield [(first + j) % self.length for j in range(self.local)]

    def __len__(self):
        return max(0, self.steps - self.start)


def build_loader(cfg, rank, world, start):
    from .datasets import build_dataset

    data = cfg["data"]
    if data["batch"] % world:
        raise ConfigError(f"data.batch={data['batch']}", f"must be divisible by the number of processes ({world})")
    dataset = build_dataset(data["train"])
    sampler = GlobalBatches(len(dataset), data["batch"], rank, world, start, cfg["train"]["steps"])
    workers = int(data.get("workers", 0))
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, num_workers=workers, persistent_workers=False, prefetch_factor=2 if workers else None
    )


# ---------------------------------------------------------------- the trainer


class Trainer:
    def __init__(self, cfg, device, world=1, *, init=True):
        self.cfg, self.device, self.world = cfg, device, world
        tcfg, sched = cfg["train"], cfg["schedule"]
        # channels_last: about 1.35x faster convolutions on this CPU (and tensor-core friendly on CUDA)
        self.memory_format = torch.channels_last if tcfg["channels_last"] else torch.contiguous_format
        self.G = build_model(cfg["model"])
        # names of the parameters train.init's file lacks (they keep their initialisation); a resumed
        # run skips it, since its checkpoint replaces the weights anyway
        self.init_new = init_weights(self.G, tcfg["init"]) if init and tcfg["init"] else None
        self.G = self.G.to(device, memory_format=self.memory_format)
        self.D = build_model(cfg["discriminator"]).to(device) if cfg["discriminator"] else None
        self.pixel_loss = build_generator_loss(cfg["loss"]["generator"]).to(device)
        self.adv_loss = None
        if self.D is not None:
            self.adv_loss = build_adversarial_loss(cfg["loss"]["adversarial"]).to(device)
            probabilities = getattr(self.D, "output_kind", "logits") == "probability"
            if probabilities and self.adv_loss.name == "relativistic":
                raise ConfigError(cfg["discriminator"].get("type"), "ends in a sigmoid; the relativistic loss needs logits", "use loss.adversarial.type=bce")
            if self.adv_loss.name == "bce":
                self.adv_loss.logits = not probabilities
        self.kernel_weight = float(cfg["loss"]["kernel"] or 0)
        if self.kernel_weight and (getattr(self.G, "deconv", None) is None or not cfg["data"]["train"].get("kernel_size")):
            raise ConfigError("loss.kernel", "needs a model with a kernel estimator and training pairs with kernels",
                              "set model.deconv=true and data.train.kernel_size=31, or loss.kernel=0")
        self.ema = EMA(self.G, float(tcfg["ema"])) if tcfg["ema"] else None
        betas = tuple(tcfg["betas"])
        # AdamW: decoupled weight decay, the kind that bounds weights under Adam's scaled steps
        self.opt_g = torch.optim.AdamW(self.G.parameters(), lr=tcfg["lr"], betas=betas, weight_decay=tcfg["weight_decay"])
        self.opt_d = None
        if self.D is not None:
            self.opt_d = torch.optim.Adam(self.D.parameters(), lr=sched["d_lr"] or tcfg["lr"], betas=betas)
        self.amp = bool(tcfg["amp"]) and device.type == "cuda"
        # one GradScaler per optimizer: each is updated once per step of its own network
        self.scaler_g = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.scaler_d = torch.amp.GradScaler("cuda", enabled=self.amp and self.D is not None)
        if world > 1:
            if device.type == "cuda":  # SyncBatchNorm has no CPU implementation
                self.G = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.G)
            ids = [device.index] if device.type == "cuda" else None
            self.G = DistributedDataParallel(self.G, device_ids=ids)
            if self.D is not None:
                self.D = DistributedDataParallel(self.D, device_ids=ids)

    @property
    def generator(self):
        """The weights to evaluate and ship: the EMA copy when enabled."""
        return self.ema.model if self.ema else unwrap(self.G)

    def set_lr(self, factor):
        for opt, base in ((self.opt_g, self.cfg["train"]["lr"]), (self.opt_d, self.cfg["schedule"]["d_lr"] or self.cfg["train"]["lr"])):
            if opt is not None:
                for group in opt.param_groups:
                    group["lr"] = base * factor

    def _step(self, opt, scaler, loss, params):
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        clip = float(self.cfg["train"]["grad_clip"])
        if clip > 0:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, clip)
        scaler.step(opt)
        scaler.update()

    def _autocast(self):
        return torch.autocast(self.device.type, enabled=self.amp)

    def _judge(self, D, image, lq):
        """D's verdict on ``image``; a conditional D (DE-GAN) also sees the degraded input."""
        return D(image, lq) if getattr(unwrap(D), "conditional", False) else D(image)

    def optimize(self, lq, gt, step, kernel=None):
        """One training step; returns a dict of floats for the log. ``kernel``: the pairs' true
        blur kernels, for ``loss.kernel``."""
        phase = phase_of(step, self.cfg["schedule"])
        logs = {}
        self.G.train()
        if phase in ("g", "gan"):
            with self._autocast():
                out = self.G(lq)
                loss, parts = self.pixel_loss(out.float(), gt)
                logs.update(parts)
                if self.kernel_weight:
                    kernel_ce = unwrap(self.G).deconv.estimator.loss(kernel)
                    loss = loss + self.kernel_weight * kernel_ce
                    logs["kernel_ce"] = float(kernel_ce.detach())
                if phase == "gan":
                    self.D.requires_grad_(False)
                    # The plain module, not the DDP wrapper: D's weights get no gradient here.
                    D = unwrap(self.D)
                    fake_pred = self._judge(D, out, lq)
                    real_pred = self._judge(D, gt, lq).detach() if self.adv_loss.name == "relativistic" else None
                    adv = self.adv_loss.generator(real_pred, fake_pred)
                    loss = loss + self.adv_loss.weight * adv
                    logs["g_adv"] = float(adv.detach())
                    self.D.requires_grad_(True)
            self._step(self.opt_g, self.scaler_g, loss, self.G.parameters())
            logs["loss"] = float(loss.detach())
            if self.ema:
                self.ema.update(unwrap(self.G), step)
        d_due = phase == "d" or (phase == "gan" and step % int(self.cfg["schedule"]["g_per_d"]) == 0)
        if d_due:
            if phase == "d":  # the generator is frozen in this phase
                with torch.no_grad(), self._autocast():
                    fake = unwrap(self.G).eval()(lq)
            else:
                fake = out.detach()
            with self._autocast():
                d_loss = self.adv_loss.discriminator(self._judge(self.D, gt, lq), self._judge(self.D, fake.detach(), lq))
            self._step(self.opt_d, self.scaler_d, d_loss, self.D.parameters())
            logs["d_loss"] = float(d_loss.detach())
        return logs

    # ------------------------------------------------------------ state for checkpoints

    def training_state(self, step, best, elapsed):
        return {
            "step": step,
            "elapsed_s": elapsed,
            "best_psnr": best,
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict() if self.opt_d else None,
            "discriminator": unwrap(self.D).state_dict() if self.D is not None else None,
            "ema": self.ema.model.state_dict() if self.ema else None,
            "scaler_g": self.scaler_g.state_dict(),
            "scaler_d": self.scaler_d.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
        }

    def load_training_state(self, ckpt):
        unwrap(self.G).load_state_dict(ckpt["state_dict"])
        state = ckpt["training"]
        self.opt_g.load_state_dict(state["opt_g"])
        if self.opt_d is not None and state.get("opt_d"):
            self.opt_d.load_state_dict(state["opt_d"])
        if self.D is not None and state.get("discriminator"):
            unwrap(self.D).load_state_dict(state["discriminator"])
        if self.ema and state.get("ema"):
            self.ema.model.load_state_dict(state["ema"])
        # checkpoints of the first trainer version kept one GradScaler under "scaler"
        self.scaler_g.load_state_dict(state["scaler_g"] if "scaler_g" in state else state["scaler"])
        if "scaler_d" in state:
            self.scaler_d.load_state_dict(state["scaler_d"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
        return int(state["step"]), state.get("best_psnr"), float(state.get("elapsed_s", 0.0))


# ---------------------------------------------------------------- driver


class StopRequest:
    """SIGTERM/SIGINT ask the loop to stop after the current step and save a checkpoint."""

    def __init__(self):
        self.requested = False
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. inside a test runner thread)
                pass
        return self

    def _handle(self, signum, frame):
        if self.requested:  # a second signal: stop now
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(cfg, run_dir, *, resume=False, progress=True):
    """Train according to ``cfg`` into ``run_dir``; returns a summary dict (rank 0)."""
    rank, world, device = dist_setup()
    if cfg["train"].get("threads"):
        torch.set_num_threads(int(cfg["train"]["threads"]))
    seed_everything(int(cfg["seed"]))
    if not resume and rank == 0:
        check_new_run_dir(run_dir)
    run = RunDir(run_dir, enabled=rank == 0)
    latest = run.path / "checkpoints" / "latest.pt"
    if resume and not latest.is_file():
        raise InputError(latest, "nothing to resume", "start the run without --resume")
    if not resume and rank == 0 and latest.is_file():
        raise ConfigError(run.path, "run directory already holds a run", "pass --resume to continue it, or choose another --run-dir")

    trainer = Trainer(cfg, device, world, init=not resume)
    start, best, elapsed_before = 0, None, 0.0
    if resume:
        ckpt = load_checkpoint(latest)
        start, best, elapsed_before = trainer.load_training_state(ckpt)
    if rank == 0:
        save_config(cfg, run.path / "config.yaml")
        event = {"event": "resume" if resume else "start", "step": start, "world": world, "device": str(device),
                 "params": count_parameters(unwrap(trainer.G))}
        if trainer.init_new is not None:
            event["init"] = {"weights": str(cfg["train"]["init"]), "new_tensors": len(trainer.init_new)}
        run.log_event(event)
    validator = None
    if rank == 0 and cfg["val"].get("data") and cfg["val"].get("every"):
        from .validation import Validator

        validator = Validator(cfg, device)

    total = int(cfg["train"]["steps"])
    loader = build_loader(cfg, rank, world, start)
    tcfg = cfg["train"]
    bar = run.progress(total, start) if progress else None
    step, t0, last_logs, last_psnr = start, time.time(), {}, None
    budget_s = 60.0 * float(tcfg.get("time_budget_min") or 0)

    def elapsed():
        return elapsed_before + time.time() - t0

    def save_latest(step):
        if rank == 0:
            save_checkpoint(latest, unwrap(trainer.G), training=trainer.training_state(step, best, elapsed()),
                            metrics={"step": step, "best_psnr": best}, extra={"experiment": cfg})

    with StopRequest() as stop:
        for batch in loader:
            lq = batch["lq"].to(device, non_blocking=True, memory_format=trainer.memory_format)
            gt = batch["gt"].to(device, non_blocking=True, memory_format=trainer.memory_format)
            time_fraction = elapsed() / budget_s if budget_s else 0.0
            if world > 1 and budget_s:  # every rank must take the same decision
                shared = torch.tensor([time_fraction])
                dist.broadcast(shared, 0)
                time_fraction = shared.item()
            if time_fraction >= 1.0:
                break
            trainer.set_lr(lr_factor(step, total, cfg["schedule"], time_fraction))
            logs = trainer.optimize(lq, gt, step, batch.get("kernel"))
            step += 1
            last_logs = logs
            if rank == 0:
                if step % tcfg["log_every"] == 0 or step == total:
                    run.log_metrics({"step": step, "lr": trainer.opt_g.param_groups[0]["lr"], "time": round(elapsed(), 2), **logs})
                if validator and (step % cfg["val"]["every"] == 0 or step == total):
                    result = validator.run(trainer.generator)
                    last_psnr = result["psnr"]
                    run.log_metrics({"step": step, "val": result})
                    run.save_samples(validator.samples(trainer.generator), step)
                    if best is None or result["psnr"] > best:
                        best = result["psnr"]
                        run.save_best(trainer.generator, step, result, cfg)
                    run.plot()
                if step % tcfg["ckpt_every"] == 0 and step != total:
                    save_latest(step)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix({"loss": f"{logs.get('loss', logs.get('d_loss', 0)):.4f}",
                                     "psnr": "-" if last_psnr is None else f"{last_psnr:.2f}"})
            if world > 1:
                flag = torch.tensor([float(stop.requested)])
                dist.all_reduce(flag)
                stop.requested = flag.item() > 0
            if stop.requested:
                break
    if bar is not None:
        bar.close()
    save_latest(step)
    summary = {"step": step, "steps": total, "stopped_early": step < total, "best_psnr": best,
               "last": last_logs, "wall_s": round(elapsed(), 1), "run_dir": str(run.path)}
    if rank == 0:
        final = validator.run(trainer.generator) if validator else {}
        if final:
            run.log_metrics({"step": step, "val": final, "final": True})
        summary["final_val"] = final
        run.save_final(trainer.generator, step, final, cfg, summary["wall_s"])
        run.log_event({"event": "end", **summary})
        run.plot()
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return summary


def summary_json(summary):
    return json.dumps(summary, indent=2, default=str)
