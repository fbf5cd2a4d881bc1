"""Air-temperature regression from SatCLIP embeddings (the protocol of the SatCLIP notebook B01).

    python examples/air_temperature.py [CSV] [--model resnet50-l40] [--epochs 3000]

CSV defaults to ../shared/data/air-temperature-stations.csv (relative to the repository root;
columns Lon, Lat, meanT, ...): mean annual air temperature at ~3,000 weather stations.

Protocol, as in B01: embed each station; scale the target by its maximum on the training half
(y / ymax); a 50/50 random train/test split; an MLP with one hidden layer of 64 units (ReLU)
trained with Adam (learning rate 1e-3) on the mean squared error, full batch. Reported: test R^2
and RMSE in degrees C. Next to it the ridge probe of :func:`satclip.downstream.probes.probe` (5-fold, random
and spatial-block CV). The same is run on raw-coordinate baselines: lon/lat degrees, unit xyz
vectors, and the spherical harmonics alone (the encoder's input, without its network).

Without the released weights (no Hub access) it runs on a randomly initialised encoder of the
released architecture and says so loudly: those numbers say nothing about SatCLIP.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import satclip
from satclip.downstream.probes import baseline_features, probe
from satclip.errors import CheckpointError

DEFAULT_CSV = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "air-temperature-stations.csv"


def mlp_r2(features: np.ndarray, y: np.ndarray, *, epochs: int, seed: int = 0) -> tuple[float, float]:
    """B01's MLP on a 50/50 split: (test R^2, test RMSE in the target's units)."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(y))
    train, test = perm[: len(y) // 2], perm[len(y) // 2 :]
    ymax = np.abs(y[train]).max()
    # Standardise the features on the training half (raw lon/lat spans +-180; embeddings are O(1)).
    mu, sd = features[train].mean(0), features[train].std(0) + 1e-12
    x = torch.as_tensor((features - mu) / sd, dtype=torch.float32)
    t = torch.as_tensor(y / ymax, dtype=torch.float32)[:, None]
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(epochs):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(net(x[train]), t[train])
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred = net(x[test]).numpy()[:, 0] * ymax
    resid = y[test] - pred
    r2 = 1 - np.sum(resid**2) / np.sum((y[test] - y[test].mean()) ** 2)
    return float(r2), float(np.sqrt(np.mean(resid**2)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="?", type=Path, default=DEFAULT_CSV, help="stations CSV (Lon, Lat, meanT)")
    parser.add_argument("--model", default="resnet50-l40", help="short name, Hub id or local checkpoint")
    parser.add_argument("--target", default="meanT")
    parser.add_argument("--epochs", type=int, default=3000, help="full-batch Adam steps of the MLP (default: 3000)")
    args = parser.parse_args()

    if not args.csv.exists():
        parser.error(
            f"{args.csv} does not exist; pass the stations CSV (columns Lon, Lat, {args.target}) as an argument"
        )
    frame = pd.read_csv(args.csv)
    lonlat = frame[["Lon", "Lat"]].to_numpy(dtype=np.float64)
    y = frame[args.target].to_numpy(dtype=np.float64)

    try:
        model = satclip.load(args.model)
        label = args.model
    except CheckpointError as err:
        from satclip.models.location import build_location_encoder

        bar = "!" * 100
        print(f"{bar}\n!! Could not load {args.model!r}: {' '.join(str(err).split())[:160]}")
        print("!! USING A RANDOMLY INITIALISED L=40 ENCODER OF THE RELEASED ARCHITECTURE (STAND-IN).")
        print("!! ITS NUMBERS SAY NOTHING ABOUT SATCLIP. See docs/install.md 'Getting the released weights'.")
        print(bar)
        torch.manual_seed(0)  # the same stand-in on every run
        model = build_location_encoder(40).double().eval()
        label = "STAND-IN random L=40 encoder"

    features = {
        label: np.asarray(satclip.encode(lonlat, model, device="cpu"), dtype=np.float64),
        "baseline: lon/lat": baseline_features(lonlat, "lonlat"),
        "baseline: xyz": baseline_features(lonlat, "xyz"),
        "baseline: SH L=10 only": baseline_features(lonlat, "sh", L=10),
    }
    print(f"{len(y)} stations from {args.csv.name}; target {args.target!r} (deg C), {args.epochs} MLP epochs")
    width = max(len(k) for k in features)
    print(f"{'features':<{width}}  {'MLP R2':>7} {'MLP RMSE':>8}  {'ridge R2 random':>15}  {'ridge R2 spatial':>16}")
    for name, feats in features.items():
        r2, rmse = mlp_r2(feats, y, epochs=args.epochs)
        rnd = probe(feats, lonlat, y, head="ridge", cv="random").mean["r2"]
        spa = probe(feats, lonlat, y, head="ridge", cv="spatial").mean["r2"]
        print(f"{name:<{width}}  {r2:>7.3f} {rmse:>8.2f}  {rnd:>15.3f}  {spa:>16.3f}")


if __name__ == "__main__":
    main()
