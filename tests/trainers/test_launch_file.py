"""`sae-analysis train --nproc N` hands the ranks the resolved run in a launch file, not a rebuilt command line."""

from __future__ import annotations

import subprocess
from pathlib import Path


def test_nproc_relaunch_passes_the_resolved_config_in_a_launch_file(tmp_path, monkeypatch):
    """`sae-analysis train ... --nproc 2` runs torchrun with nothing but `--launch-file`: the file holds the resolved
    config, inputs and DDP settings, every rank reads back exactly those, and the file is gone when torchrun returns."""
    import numpy as np

    from sae_analysis.cli import main
    from trainers.cli_inputs import RunInputs
    from trainers.config import preset
    from trainers.ddp_launch import DDPConfig, read_launch_file

    np.save(tmp_path / "tokens.npy", np.ones((4, 8), dtype=np.int64))
    (tmp_path / "model").mkdir()
    seen: dict = {}

    def torchrun(cmd):
        seen["cmd"], seen["file"] = cmd, Path(cmd[cmd.index("--launch-file") + 1])
        seen["launch"] = read_launch_file(seen["file"])
        return 0

    monkeypatch.setattr(subprocess, "call", torchrun)
    argv = ["train", "--preset", "demo", "--model", str(tmp_path / "model"), "--data", str(tmp_path / "tokens.npy"),
            "--out", str(tmp_path / "run"), "--no-progress", "--l1-coeff", "1e-3", "--batch-size", "128", "--nproc", "2",
            "--ddp-timeout", "30"]
    assert main(argv) == 0
    cfg, inputs, ddp = seen["launch"]
    assert cfg == preset("demo").with_overrides({"l1_coeff": 1e-3, "batch_size": 128})
    assert inputs == RunInputs(out=tmp_path / "run", model=str(tmp_path / "model"), data=str(tmp_path / "tokens.npy"),
                               progress=False)
    assert ddp == DDPConfig(timeout_s=30.0)
    assert seen["cmd"][-3:] == ["trainers", "--launch-file", str(seen["file"])] and "--l1-coeff" not in seen["cmd"]
    assert not seen["file"].exists()
