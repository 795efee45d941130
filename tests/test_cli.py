"""seqrec_ray.cli: flags generated from a config dataclass, and the jobs' spellings of them."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
from dataclasses import dataclass, field

import pytest
from conftest import REPO_ROOT

from seqrec_ray import cli


@dataclass(frozen=True)
class Inner:
    depth: int = 1


@dataclass(frozen=True)
class Toy:
    path: str = field(metadata={"help": "where it goes"})
    size: int = field(default=3, metadata={"help": "how many"})
    rate: float | None = None  # None: derived from size in __post_init__
    ks: tuple[int, ...] = (5, 10)
    use_gap: bool = True
    inner: Inner = Inner()  # a nested config: no flag of its own

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"size must be >= 1, got {self.size!r}")
        if self.rate is None:
            object.__setattr__(self, "rate", self.size / 10)


def parse(cls, argv, **kwargs) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_flags(parser, cls, **kwargs)
    return parser.parse_args(argv)


def test_flags_not_given_keep_the_dataclass_defaults_and_none_stays_none_until_post_init():
    args = parse(Toy, ["--path", "p"])
    assert cli.given(args, Toy) == {"path": "p"}
    assert cli.build(Toy, args) == Toy(path="p")
    assert cli.build(Toy, args).rate == pytest.approx(0.3)  # derived, because --rate was not given


def test_types_come_from_the_annotations():
    args = parse(Toy, ["--path", "p", "--size", "7", "--rate", "0.5", "--ks", "1,10,20", "--no-use-gap"])
    assert cli.build(Toy, args) == Toy(path="p", size=7, rate=0.5, ks=(1, 10, 20), use_gap=False)
    assert cli.build(Toy, parse(Toy, ["--path", "p", "--no-use-gap", "--use-gap"])).use_gap is True


def test_a_field_added_to_the_dataclass_becomes_a_flag():
    Grown = dataclasses.make_dataclass(
        "Grown", [("max_len", int | None, field(default=None, metadata={"help": "longest history"}))],
        bases=(Toy,), frozen=True)
    parser = argparse.ArgumentParser()
    cli.add_flags(parser, Grown)
    assert cli.build(Grown, parser.parse_args(["--path", "p", "--max-len", "40"])).max_len == 40
    assert cli.build(Grown, parser.parse_args(["--path", "p"])).max_len is None
    assert "longest history (default: None)" in " ".join(parser.format_help().split())


def test_help_is_the_field_metadata_with_the_default():
    parser = argparse.ArgumentParser()
    cli.add_flags(parser, Toy)
    text = " ".join(parser.format_help().split())
    assert "--path PATH where it goes" in text and "--size INT how many (default: 3)" in text
    assert "--ks INT,INT,... default: 5,10" in text and "--use-gap, --no-use-gap default: on" in text
    assert "--depth" not in text and "--inner" not in text


def test_a_bad_value_is_a_value_error_naming_the_flag_or_the_field():
    with pytest.raises(ValueError, match=r"--size: expected an int, got 'three'"):
        cli.build(Toy, parse(Toy, ["--path", "p", "--size", "three"]))
    with pytest.raises(ValueError, match=r"--ks: expected comma-separated ints, got 'ten'"):
        cli.build(Toy, parse(Toy, ["--path", "p", "--ks", "ten"]))
    with pytest.raises(ValueError, match=r"size must be >= 1, got 0"):  # from __post_init__
        cli.build(Toy, parse(Toy, ["--path", "p", "--size", "0"]))


def test_a_bad_value_exits_2_with_an_error_line(capsys):
    def main(argv):
        try:
            cli.build(Toy, parse(Toy, argv))
        except ValueError as exc:
            return cli.fail(exc)
        return 0

    assert main(["--path", "p", "--size", "0"]) == 2
    assert capsys.readouterr().err == "error: size must be >= 1, got 0\n"
    with pytest.raises(SystemExit) as stop:  # a missing required flag: argparse's own exit 2
        parse(Toy, [])
    assert stop.value.code == 2 and "--path" in capsys.readouterr().err


def test_renames_off_spellings_parsers_and_defaults():
    flags = {"size": "--n", "use_gap": cli.Flag(off=("--no-gap",)),
             "rate": cli.Flag(type=lambda pct: float(pct) / 100), "path": cli.Flag(default="here")}
    args = parse(Toy, ["--n", "4", "--no-gap", "--rate", "25"], flags=flags)
    assert cli.build(Toy, args) == Toy(path="here", size=4, rate=0.25, use_gap=False)
    with pytest.raises(SystemExit):
        parse(Toy, ["--size", "4"], flags=flags)


def test_values_win_over_flags_and_base_keeps_its_fields():
    args = parse(Toy, ["--path", "p", "--size", "5"])
    assert cli.build(Toy, args, inner=Inner(depth=2)).inner == Inner(depth=2)
    base = Toy(path="b", size=2, ks=(10,))  # rate resolved to 0.2: base's values are kept, not re-derived
    assert cli.build(Toy, args, base=base) == Toy(path="p", size=5, rate=0.2, ks=(10,))


def test_unknown_names_and_unsupported_annotations_are_refused():
    with pytest.raises(TypeError, match="no field sise"):
        parse(Toy, [], flags={"sise": "--sise"})
    with pytest.raises(TypeError, match="no field colour"):
        cli.build(Toy, parse(Toy, ["--path", "p"]), colour="red")
    args = parse(Toy, ["--path", "p"])
    setattr(args, cli.dest(Toy, "colour"), "red")
    with pytest.raises(TypeError, match="no field 'colour'"):
        cli.build(Toy, args)

    @dataclass(frozen=True)
    class Odd:
        when: dict = field(default_factory=dict)

    with pytest.raises(TypeError, match="Odd.when"):
        parse(Odd, [])


def _job(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_job", REPO_ROOT / "jobs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_job_spellings_and_model_defaults(tmp_path):
    from seqrec_ray.train.config import TrainConfig
    from seqrec_ray.train.ray_trainer import RayTrainConfig

    job = _job("train")
    base = ["--data", "d", "--output", "o"]
    train, ray_config = job.build_configs(job.parse_args(base))
    assert train == TrainConfig() and ray_config == RayTrainConfig()  # every default left to the dataclasses
    train, ray_config = job.build_configs(job.parse_args([
        *base, "--model", "gru", "--no-event-type", "--no-gap", "--no-category", "--mask-history-in-loss",
        "--run-name", "r1", "--storage", str(tmp_path / "runs"), "--num-workers", "3"]))
    assert (train.model, train.use_event_type, train.use_gap, train.use_category) == ("gru", False, False, False)
    assert train.mask_history_in_loss and train.run_name == "r1" and train.lr == 1e-3  # gru's tuned lr
    assert ray_config == RayTrainConfig(num_workers=3, run_name="r1", storage_path=str(tmp_path / "runs"))
    dests = {action.dest for action in job.build_parser()._actions}
    missing = [f"{cls.__name__}.{f.name}" for cls in (TrainConfig, RayTrainConfig) for f in dataclasses.fields(cls)
               if cli.dest(cls, f.name) not in dests]
    assert missing == ["TrainConfig.run_name"]  # one --run-name (RayTrainConfig's) names both


def test_batch_recommend_job_exits_2_naming_the_field(capsys):
    job = _job("batch_recommend")
    assert job.main(["--data", "d", "--checkpoint", "c", "--output", "o", "--k", "0"]) == 2
    assert "k must be a positive int, got 0" in capsys.readouterr().err
