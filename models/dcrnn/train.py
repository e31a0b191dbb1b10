"""`instrument train dcrnn`: WGAN-GP training of the DCRNN on bar segments of piano rolls.

One iteration:
  1. n_critic critic steps: real 2-bar segments (random transposition, their pitch-class
     histogram as condition, dropped for --cond-dropout of them) vs generated ones from *fresh*
     noise, shown to the critic as the binarized roll the instrument would play (straight-through
     gradients); loss E[D(fake)] - E[D(real)] + 10 * GP + info_weight * MSE(Q(fake), EMG slots);
  2. one generator step on fresh noise: -E[D(fake)] + info_weight * MSE(Q(fake), EMG slots)
     + vae_weight * (reconstruction + KL) of a real batch through a training-only encoder
     (VAE-GAN): the reconstruction teaches note shapes fast and keeps z from being ignored.
The generator streams the bars of a segment with its state carried, exactly as it plays.
Progress goes to a tqdm bar, sample metrics every --sample-every steps to ``metrics.jsonl``,
a resumable training state (nets, optimizers, step) to ``train_state.pt``, curves to ``losses.png``.
At the end the binarization threshold is calibrated to the real note density and saved.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from models.errors import ModelError
from models.dcrnn.model import (
    DCRNNConfig,
    Generator,
    binarize,
    calibrate_threshold,
    roll_channels,
    roll_hard,
    roll_probs,
    sample_z,
    save_generator,
)
from models.dcrnn.critic import Critic, Encoder, gradient_penalty, reconstruction_loss
from models.dcrnn.data import conditions, load_rolls, segments, transpose_batch
from models.loss_plots import plot_losses
from models.roll_metrics import summary

DEFAULT_DATA = ["../shared/data/deepsymphony"]


def configure_dcrnn(parser: argparse.ArgumentParser) -> None:
    """Arguments of `instrument train dcrnn`."""
    parser.add_argument("--data", nargs="+", default=DEFAULT_DATA, help="MIDI folders/files and BL2012 .json files (default: %(default)s)")
    parser.add_argument("--out", required=True, type=Path, help="output folder: dcrnn.pt, dcrnn.json, train_state.pt, metrics.jsonl, losses.png")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/train_state.pt")
    parser.add_argument("--max-minutes", type=float, default=45.0, help="stop (and save) after this wall time")
    parser.add_argument("--max-steps", type=int, default=0, help="stop after this many generator steps (0 = no limit)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--batch", type=int, default=32, help="2-bar segments per batch")
    parser.add_argument("--n-critic", type=int, default=3, help="critic steps per generator step")
    parser.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate of both nets (betas 0.5, 0.9)")
    parser.add_argument("--info-weight", type=float, default=2.0, help="weight of the EMG-slot mutual-information term")
    parser.add_argument("--vae-weight", type=float, default=0.3, help="weight of the VAE-GAN reconstruction + KL term (0 = pure GAN)")
    parser.add_argument("--cond-dropout", type=float, default=0.15, help="share of segments trained without condition")
    parser.add_argument("--min-grid-fit", type=float, default=0.85, help="keep MIDI files with this share of onsets on the 16th grid")
    parser.add_argument("--sample-every", type=int, default=200, help="generator steps between sample metrics")
    parser.add_argument("--save-every", type=float, default=120.0, help="seconds between checkpoints")
    parser.add_argument("--soft", action="store_true", help="show the critic sigmoid probabilities instead of "
                        "straight-through binary rolls (the original's way; trains worse)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="a tiny model (for tests)")


def run_dcrnn(args: argparse.Namespace) -> int:
    """Train, checkpointing to args.out; returns 0."""
    torch.set_num_threads(max(1, args.threads))
    torch.manual_seed(args.seed)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / "train_state.pt"

    cfg = DCRNNConfig(rnn_a_hidden=16, rnn_b_hidden=16, level_dim=8, octave_channels=8, critic_channels=8) if args.tiny else DCRNNConfig()
    if args.resume:
        if not state_path.exists():
            raise ModelError(f"--resume: no {state_path}")
        saved = torch.load(state_path, weights_only=True)
        cfg = DCRNNConfig.from_dict(json.loads(saved["config"]))
    gen, critic, encoder = Generator(cfg), Critic(cfg), Encoder(cfg)
    opt_g = torch.optim.Adam([*gen.parameters(), *encoder.parameters()], lr=args.lr, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(critic.parameters(), lr=args.lr, betas=(0.5, 0.9))
    step, elapsed, history = 0, 0.0, []
    if args.resume:
        gen.load_state_dict(saved["generator"])
        critic.load_state_dict(saved["critic"])
        encoder.load_state_dict(saved["encoder"])
        opt_g.load_state_dict(saved["opt_g"])
        opt_d.load_state_dict(saved["opt_d"])
        step, elapsed, history = int(saved["step"]), float(saved["elapsed"]), json.loads(saved["history"])

    # ---- data: 2-bar segments of the training rolls, real test bars for sample metrics
    try:
        rolls, skipped = load_rolls(args.data, min_grid_fit=args.min_grid_fit)
    except FileNotFoundError as err:
        raise ModelError(str(err)) from err
    seg_len = cfg.steps_per_bar * cfg.bars_per_sample
    train = segments(rolls["train"], seg_len)
    test_bars = segments(rolls["test"] or rolls["valid"], cfg.steps_per_bar, hop=cfg.steps_per_bar)
    if len(train) == 0:
        raise ModelError(f"--data: no training segments in {', '.join(map(str, args.data))} ({len(skipped)} files "
                         "skipped); give folders of .mid/.midi files or BL2012 .json files")
    tqdm.write(f"dcrnn: {sum(map(len, rolls.values()))} pieces, {len(train)} training segments, "
               f"{len(test_bars)} test bars, {len(skipped)} files skipped")
    rng = np.random.default_rng(args.seed + step)
    noise = torch.Generator().manual_seed(args.seed * 1000 + step)  # fresh draws every step

    def real_batch() -> tuple[torch.Tensor, torch.Tensor]:
        idx = rng.integers(0, len(train), args.batch)
        seg = transpose_batch(train[idx], rng.integers(-6, 6, args.batch))
        cond = torch.from_numpy(conditions(seg))
        cond[torch.from_numpy(rng.random(args.batch) < args.cond_dropout)] = 0.0
        return roll_channels(torch.from_numpy(seg)), cond

    def fake_batch(cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        zs = sample_z(args.batch * cfg.bars_per_sample, cfg, noise).view(args.batch, cfg.bars_per_sample, -1)
        # a performer moves the EMG slots between bars: half the segments change them at the bar line
        hold_style = zs[:, :1, cfg.n_emg_slots:].expand(-1, cfg.bars_per_sample, -1)
        zs = torch.cat([zs[:, :, : cfg.n_emg_slots], hold_style], dim=2)
        same = torch.rand(args.batch, generator=noise) < 0.5
        zs[same, :, : cfg.n_emg_slots] = zs[same, :1, : cfg.n_emg_slots]
        logits = gen(zs, cond)
        fake = roll_probs(logits) if args.soft else roll_hard(logits)
        return fake, zs[:, :, : cfg.n_emg_slots]

    budget_s = args.max_minutes * 60
    t_start = time.monotonic() - elapsed
    last_save = time.monotonic()
    bar = tqdm(initial=step, total=args.max_steps or None, unit="step", desc="dcrnn", dynamic_ncols=True)
    while True:
        # ---- critic steps
        for _ in range(args.n_critic):
            real, cond = real_batch()
            with torch.no_grad():
                fake, emg = fake_batch(cond)
            d_real, _ = critic(real, cond, with_slots=False)
            d_fake, q_fake = critic(fake, cond)
            gp = gradient_penalty(critic, real, fake, cond)
            info_d = torch.mean((q_fake - emg) ** 2)
            wdist = d_real.mean() - d_fake.mean()
            loss_d = -wdist + 10.0 * gp + args.info_weight * info_d
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
        # ---- generator step (fresh noise, fresh conditions) + VAE term on a real batch
        real, cond = real_batch()
        fake, emg = fake_batch(cond)
        d_fake, q_fake = critic(fake, cond)
        info_g = torch.mean((q_fake - emg) ** 2)
        loss_g = -d_fake.mean() + args.info_weight * info_g
        rec = kl = torch.zeros(())
        if args.vae_weight > 0:
            mu, logvar = encoder(real)  # (B, bars, Z)
            z_post = mu + torch.randn(mu.shape, generator=noise) * (0.5 * logvar).exp()
            rec = reconstruction_loss(gen(z_post, cond), real)
            kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(dim=2).mean() / cfg.steps_per_bar  # per step
            loss_g = loss_g + args.vae_weight * (rec + kl)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        step += 1
        bar.update(1)

        # ---- log, sample metrics, checkpoint
        row = {"step": step, "wdist": wdist.item(), "gp": gp.item(), "loss_g": loss_g.item(), "info": info_g.item(),
               "rec": rec.item(), "kl": kl.item()}
        history.append(row)
        if step % 10 == 0:
            bar.set_postfix(W=f"{row['wdist']:.3f}", gp=f"{row['gp']:.3f}", info=f"{row['info']:.3f}", rec=f"{row['rec']:.3f}")
        if not math.isfinite(row["wdist"]) or not math.isfinite(row["loss_g"]):
            tqdm.write("dcrnn: loss is not finite; stopping without saving")
            return 1
        if step % args.sample_every == 0:
            metrics = sample_metrics(gen, cfg, test_bars, noise)
            metrics["step"] = step
            with (out / "metrics.jsonl").open("a") as f:
                f.write(json.dumps(metrics) + "\n")
            tqdm.write("dcrnn step {step}: " .format(step=step) + " ".join(f"{k}={v:.3f}" for k, v in metrics.items() if k != "step"))
        elapsed = time.monotonic() - t_start
        done = elapsed >= budget_s or (args.max_steps and step >= args.max_steps)
        if done:  # the threshold the instrument plays with: real note density on held-out bars
            cal = torch.from_numpy(test_bars[rng.permutation(len(test_bars))[:256]])
            gen.eval()
            gen.threshold = calibrate_threshold(gen, cal, torch.from_numpy(conditions(cal.numpy())) if cfg.cond_dim else None)
            gen.train()
            tqdm.write(f"dcrnn: calibrated binarization threshold {gen.threshold:.2f}")
        if done or time.monotonic() - last_save >= args.save_every:
            save_all(out, cfg, gen, critic, encoder, opt_g, opt_d, step, elapsed, history, len(train))
            last_save = time.monotonic()
        if done:
            bar.close()
            tqdm.write(f"dcrnn: saved {out / 'dcrnn.pt'} after {step} steps, {elapsed / 60:.1f} min")
            return 0


@torch.no_grad()
def sample_metrics(gen: Generator, cfg: DCRNNConfig, real_bars: np.ndarray, noise: torch.Generator, n: int = 64) -> dict[str, float]:
    """Statistics of n thresholded bars (unconditioned, second bar of a stream) next to the real ones."""
    gen.eval()
    zs = sample_z(n * 2, cfg, noise).view(n, 2, -1)
    logits = gen(zs, None)[:, cfg.steps_per_bar:]
    gen.train()
    fake = summary(binarize(logits, gen.threshold).numpy())
    real = summary(real_bars[: 2000]) if len(real_bars) else {}
    keys = ["empty_bar_rate", "upc", "polyphony", "qualified_note_rate", "scale_consistency"]
    out = {f"gen_{k}": fake[k] for k in keys}
    out.update({f"real_{k}": real[k] for k in keys if k in real})
    return out


def save_all(out: Path, cfg: DCRNNConfig, gen, critic, encoder, opt_g, opt_d, step: int, elapsed: float, history: list, n_segments: int) -> None:
    """Write the shippable generator checkpoint, the resumable training state and the loss plot."""
    meta = {"steps": step, "train_minutes": round(elapsed / 60, 2), "train_segments": n_segments}
    save_generator(out / "dcrnn.pt", gen, meta)
    state = {
        "config": json.dumps(cfg.to_dict()), "generator": gen.state_dict(), "critic": critic.state_dict(), "encoder": encoder.state_dict(),
        "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "step": step, "elapsed": elapsed,
        "history": json.dumps(history),
    }
    tmp = out / "train_state.pt.tmp"
    torch.save(state, tmp)
    tmp.replace(out / "train_state.pt")
    plot_losses(history, out / "losses.png")


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point: python -m models.dcrnn.train --out DIR."""
    parser = argparse.ArgumentParser(prog="train dcrnn", description=__doc__.splitlines()[0])
    configure_dcrnn(parser)
    return run_dcrnn(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
