"""Playbook as Code command line: thin wrappers around bundle/."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from bundle import environments
from bundle.paths import DIST, relative

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode="rich",
    help="Generate AWS incident-response Terraform modules and per-account stacks, and check them.",
)
console = Console(highlight=False)
errors = Console(stderr=True, highlight=False)

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


def _environment_paths(env: list[str] | None, files: list[Path] | None, all_: bool) -> list[Path]:
    if (env or files) and all_:
        errors.print("[red]error:[/] give --env/--file or --all, not both")
        raise typer.Exit(EXIT_BAD_INPUT)
    if env or files:
        return [environments.find(name) for name in env or []] + list(files or [])
    return environments.discover()


@app.command()
def synth(
    env: Annotated[
        list[str] | None,
        typer.Option("--env", "-e", help="Environment name (environments/NAME.yaml); repeatable."),
    ] = None,
    files: Annotated[
        list[Path] | None,
        typer.Option("--file", "-f", help="An environment file anywhere on disk; repeatable."),
    ] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Every environment under environments/ (the default).")
    ] = False,
) -> None:
    """Package the remediators, generate every module, and write the root stacks.

    Writes dist/functions/*.zip, dist/modules/<module>/ and
    dist/environments/<env>/<account>-<region>/. A bad environment file exits with
    status 2, names the file and key, and leaves dist/ untouched.
    """
    from bundle import synth as synthesis

    try:
        paths = _environment_paths(env, files, all_)
        with console.status("synthesising") as status:
            summary = synthesis.synth(paths, progress=lambda text: status.update(text))
    except environments.EnvironmentError as error:
        errors.print(f"[red]error:[/] {error}", markup=True, soft_wrap=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None

    table = Table(title=f"Synthesised into {relative(DIST)}/ in {summary.seconds:.1f} s")
    table.add_column("kind")
    table.add_column("name")
    table.add_column("wave", justify="right")
    table.add_column("path")
    for name, path in summary.modules.items():
        table.add_row("module", name, "", relative(path))
    for name, sha in summary.functions.items():
        table.add_row(
            "function", name, "", f"{relative(DIST)}/functions/{name}.zip  sha256 {sha[:12]}"
        )
    for env_name, stack, wave, path in summary.stacks:
        table.add_row("stack", f"{env_name}/{stack}", str(wave), relative(path))
    console.print(table)
    console.print(
        f"{len(summary.modules)} module(s), {len(summary.functions)} function(s), "
        f"{len(summary.stacks)} stack(s)"
    )


@app.command()
def check(
    skip_checkov: Annotated[
        bool, typer.Option("--skip-checkov", help="Only run terraform validate.")
    ] = False,
) -> None:
    """terraform init + validate every generated module and stack, then checkov on dist/."""
    from bundle import check as checks

    started = time.perf_counter()
    with console.status("checking") as status:
        outcomes = checks.validate_all(progress=lambda text: status.update(text))
        if not skip_checkov:
            status.update("checkov on dist/")
            outcome, _ = checks.run_checkov()
            outcomes.append(outcome)
    table = Table(title=f"Checks ({time.perf_counter() - started:.1f} s)")
    table.add_column("what")
    table.add_column("result")
    table.add_column("detail")
    for outcome in outcomes:
        mark = "[green]ok[/]" if outcome.ok else "[red]FAILED[/]"
        table.add_row(outcome.name, mark, outcome.detail.splitlines()[0] if outcome.detail else "")
    console.print(table)
    failed = [o for o in outcomes if not o.ok]
    for outcome in failed:
        errors.print(f"[red]{outcome.name}[/]\n{outcome.detail}")
    if failed:
        raise typer.Exit(EXIT_FAILED)


@app.command()
def demo() -> None:
    """Run the incident playbooks locally: moto server, terraform apply, findings, expiry.

    Applies the generated notifications and waf_shield modules to a moto server on
    127.0.0.1 with the real Terraform and AWS provider, sends sample GuardDuty findings
    through the waf_blocker remediator, shows each decision, the WAF IP sets and the
    e-mail people receive, moves the clock past the expiry, sweeps, and destroys. Then
    applies the forensics module beside an Auto Scaling group and isolates its instance
    step by step, showing each step, the account after and the evidence kept. Then
    applies the threat_lists module and turns a feed served from 127.0.0.1 into a threat
    list in its bucket, showing the counts per reason. Then sends AWS Config NON_COMPLIANT
    changes for two world-open SSH groups through the config_remediator: one is fixed, the
    tagged one is left, and the reports are shown. Last, answers a Disable Access Keys and
    a Revoke Sessions custom action with the responder.
    """
    from bundle import demo as playbook
    from bundle import demo_config, demo_forensics, demo_response, demo_threat_lists
    from bundle import synth as synthesis

    started = time.perf_counter()
    with console.status("synthesising modules") as status:
        synthesis.synth([], progress=lambda text: status.update(text))
        steps, timings = playbook.run(progress=lambda text: status.update(text))
        isolation = demo_forensics.run(progress=lambda text: status.update(text))
        feed_update = demo_threat_lists.run(progress=lambda text: status.update(text))
        compliance = demo_config.run(progress=lambda text: status.update(text))
    # One block per step rather than one wide table: it stays readable at 80 columns,
    # which is what a pipeline log or a pipe gives.
    console.rule("GuardDuty -> WAF + NACL: the playbook, step by step")
    for number, step in enumerate(steps, 1):
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column(overflow="fold")
        grid.add_row("decision", Text(step.decision))
        grid.add_row("WAF blocklists", Text("\n".join(step.ipv4_set + step.ipv6_set) or "(empty)"))
        grid.add_row("NACL inbound", Text("\n".join(step.nacl_entries) or "(none)"))
        console.print(Text(f"{number}. {step.label}", style="bold"))
        console.print(Padding(grid, (0, 0, 1, 3)))
    console.rule("What people were told (the notifier's e-mail, first lines)")
    for number, step in enumerate(steps, 1):
        if not step.emails:
            console.print(f"[bold]{number}.[/] (nothing to report)")
        for email in step.emails:
            console.print(f"[bold]{number}.[/] " + "\n   ".join(playbook.email_excerpt(email)))
    _print_isolation(isolation)
    demo_threat_lists.print_summary(console, feed_update)
    _print_compliance(compliance)
    console.rule("Security Hub custom actions -> the responder (incident_response)")
    for line in demo_response.lines(demo_response.run()):
        console.print(Text(line))
    console.print(
        f"apply {timings['apply']:.0f} s, playbook {timings['playbook']:.1f} s, "
        f"destroy {timings['destroy']:.0f} s, total {time.perf_counter() - started:.0f} s"
    )


def _print_isolation(isolation: object) -> None:
    """The forensics part of the demo: each step, the account after, the evidence kept."""
    from bundle.demo_forensics import Isolation

    assert isinstance(isolation, Isolation)
    console.rule(f"GuardDuty {isolation.finding} -> forensic isolation, step by step")
    console.print(f"instance {isolation.instance_id}: execution {isolation.outcome}")
    for number, step in enumerate(isolation.steps, 1):
        console.print(Text(f"{number}. {step.state}: {step.status}", style="bold"))
        for action in step.actions:
            console.print(Padding(Text(action), (0, 0, 0, 3)))
    console.rule("The account after the isolation")
    for line in isolation.after:
        console.print(Text(line))
    console.rule("Evidence kept (Object Lock bucket; sha256 held by S3)")
    for key, size, digest in isolation.evidence:
        console.print(Text(f"{key.split('/', 3)[-1]}  {size} B  sha256 {digest[:16]}..."))
    console.print(f"report sent: {isolation.report_title or '(none)'}")
    console.print(
        f"forensics: apply {isolation.timings['apply']:.0f} s, workflow "
        f"{isolation.timings['workflow']:.1f} s, destroy {isolation.timings['destroy']:.0f} s"
    )


def _print_compliance(compliance: object) -> None:
    """The Config part of the demo: each group after the remediator, and the reports."""
    from bundle.demo_config import ConfigDemo

    assert isinstance(compliance, ConfigDemo)
    console.rule("AWS Config restricted-ssh NON_COMPLIANT -> config_remediator")
    for label, ingress in compliance.groups.items():
        console.print(Text(f"{label}: {compliance.outcomes[label]}", style="bold"))
        console.print(Padding(Text("\n".join(ingress)), (0, 0, 0, 3)))
    console.rule("The remediation reports (notifications topic)")
    for report in compliance.reports:
        console.print(Text(report["detail"]["title"], style="bold"))
        for action in report["detail"]["actions"]:
            console.print(Padding(Text(action), (0, 0, 0, 3)))


@app.command()
def docs() -> None:
    """Write docs/modules/<module>.md (inputs, outputs, permissions) from the module definitions."""
    from bundle.paths import ROOT
    from bundle.readme import write_docs

    for path in write_docs(ROOT / "docs" / "modules"):
        console.print(f"wrote {relative(path)}")
    from functions.common import finding_catalog

    catalog = ROOT / "docs" / "finding-catalog.md"
    catalog.write_text(finding_catalog.markdown(), encoding="utf-8")
    console.print(f"wrote {relative(catalog)}")


def _one_environment(env: str | None, file: Path | None) -> environments.Environment:
    if bool(env) == bool(file):
        errors.print("[red]error:[/] give one of --env NAME or --file PATH")
        raise typer.Exit(EXIT_BAD_INPUT)
    try:
        return environments.load(environments.find(env) if env else Path(str(file)))
    except environments.EnvironmentError as error:
        errors.print(f"[red]error:[/] {error}", markup=True, soft_wrap=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None


EnvOption = Annotated[
    str | None, typer.Option("--env", "-e", help="Environment name (environments/NAME.yaml).")
]
FileOption = Annotated[
    Path | None, typer.Option("--file", "-f", help="An environment file anywhere on disk.")
]
WaveOption = Annotated[
    list[int] | None, typer.Option("--wave", "-w", help="Only this wave; repeatable.")
]
AccountsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--accounts", "-a", help="Only these accounts (name, id or stack name; comma-separated)."
    ),
]
ParallelOption = Annotated[
    int,
    typer.Option("--parallel", "-p", min=1, help="Stacks at once (a wave's max_parallel caps it)."),
]
BackendConfigOption = Annotated[
    list[str] | None,
    typer.Option(
        "--backend-config", help="Passed to terraform init -backend-config (KEY=VALUE or file)."
    ),
]
OverrideOption = Annotated[
    Path | None,
    typer.Option("--override", help="Terraform override-file JSON written beside every stack."),
]
WorkdirOption = Annotated[
    Path | None, typer.Option("--workdir", help="Where terraform runs (default .cache/rollout).")
]
SummaryOption = Annotated[
    Path | None,
    typer.Option("--summary", help="Append a Markdown summary here (e.g. $GITHUB_STEP_SUMMARY)."),
]


def _rollout(
    action: str,
    env: str | None,
    file: Path | None,
    wave: list[int] | None,
    accounts: list[str] | None,
    parallel: int,
    backend_config: list[str] | None,
    override: Path | None,
    workdir: Path | None,
    summary: Path | None,
) -> None:
    import json

    from rich.live import Live

    from bundle import orchestration

    environment = _one_environment(env, file)
    try:
        stacks = orchestration.select(environment, wave, accounts)
        overrides = json.loads(override.read_text()) if override else None
    except (orchestration.RolloutError, OSError, json.JSONDecodeError) as error:
        errors.print(f"[red]error:[/] {error}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    state: dict[str, orchestration.Rollout] = {}

    def listener(rollout: orchestration.Rollout) -> None:
        state["rollout"] = rollout

    with Live(
        get_renderable=lambda: _rollout_table(state.get("rollout"), live=True),
        console=console,
        refresh_per_second=4,
        transient=True,
    ):
        try:
            rollout = orchestration.run(
                environment,
                "apply" if action == "apply" else "plan",
                stacks=stacks,
                parallel=parallel,
                backend_config=backend_config or (),
                override=overrides,
                workdir=workdir or orchestration.WORKDIR,
                listener=listener,
            )
        except orchestration.RolloutError as error:
            errors.print(f"[red]error:[/] {error}")
            raise typer.Exit(EXIT_BAD_INPUT) from None
    console.print(_rollout_table(rollout, live=False))
    for item in rollout.runs:
        if item.failed:
            errors.print(f"[red]{item.stack.name}[/] ({relative(item.directory)})\n{item.error}")
    if rollout.stopped_at_wave is not None:
        errors.print(f"[red]stopped:[/] wave {rollout.stopped_at_wave} failed; later waves skipped")
    if summary is not None:
        with summary.open("a", encoding="utf-8") as handle:
            handle.write(orchestration.markdown_summary(rollout))
    if not rollout.ok:
        raise typer.Exit(EXIT_FAILED)


def _rollout_table(rollout: object, live: bool) -> Table:
    from bundle.orchestration import Rollout

    table = Table(title_justify="left")
    if not isinstance(rollout, Rollout):
        table.title = "preparing"
        return table
    table.title = f"{rollout.action} {rollout.environment}" + (
        "" if live else f" in {rollout.seconds:.0f} s"
    )
    for column, justify in (
        ("wave", "right"), ("stack", "left"), ("account", "left"), ("result", "left"),
        ("add", "right"), ("change", "right"), ("destroy", "right"), ("time", "right"),
        ("plan", "left"),
    ):  # fmt: skip
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    colours = {"failed": "red", "skipped": "yellow", "applied": "green", "planned": "green"}
    with rollout.lock:
        for item in rollout.runs:
            colour = colours.get(item.status, "cyan")
            table.add_row(
                str(item.stack.wave),
                item.stack.name,
                item.stack.account.id,
                f"[{colour}]{item.status}[/]",
                str(item.adds),
                str(item.changes),
                str(item.destroys),
                f"{item.seconds:.0f} s",
                relative(item.plan_json) if item.plan_json.exists() else "",
            )
    return table


@app.command()
def plan(
    env: EnvOption = None,
    file: FileOption = None,
    wave: WaveOption = None,
    accounts: AccountsOption = None,
    parallel: ParallelOption = 4,
    backend_config: BackendConfigOption = None,
    override: OverrideOption = None,
    workdir: WorkdirOption = None,
    summary: SummaryOption = None,
) -> None:
    """terraform init + plan every selected stack, wave by wave, concurrently within a wave.

    Keeps tfplan, tfplan.json and tfplan.txt beside each stack (under .cache/rollout/);
    a closing table gives adds, changes and destroys per stack. Exit 1 when a stack fails.
    """
    _rollout(
        "plan", env, file, wave, accounts, parallel, backend_config, override, workdir, summary
    )


@app.command()
def apply(
    env: EnvOption = None,
    file: FileOption = None,
    wave: WaveOption = None,
    accounts: AccountsOption = None,
    parallel: ParallelOption = 4,
    backend_config: BackendConfigOption = None,
    override: OverrideOption = None,
    workdir: WorkdirOption = None,
    summary: SummaryOption = None,
) -> None:
    """plan, then apply that saved plan, for every selected stack; waves in order, and a
    failed wave stops the rollout (unless the wave says stop_on_failure: false)."""
    _rollout(
        "apply", env, file, wave, accounts, parallel, backend_config, override, workdir, summary
    )


@app.command()
def pipeline(
    env: EnvOption = None,
    file: FileOption = None,
    format_: Annotated[
        list[str] | None,
        typer.Option("--format", help="github (Actions workflow) or atlantis; repeatable."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (one format only).")
    ] = None,
) -> None:
    """Write CI definitions for the environment's rollout, wave by wave.

    github: a GitHub Actions workflow (plan on pull requests into the job summary, apply
    on the branch behind a GitHub environment per wave, OIDC credentials). atlantis: an
    atlantis.yaml with a project per stack ordered by wave. Default place:
    dist/pipelines/<env>/<format>/.
    """
    from bundle import pipelines

    environment = _one_environment(env, file)
    formats = format_ or ["github", "atlantis"]
    unknown = [f for f in formats if f not in ("github", "atlantis")]
    if unknown or (output is not None and len(formats) != 1):
        errors.print("[red]error:[/] --format is github or atlantis; --output takes one format")
        raise typer.Exit(EXIT_BAD_INPUT)
    for form in formats:
        chosen: pipelines.Format = "github" if form == "github" else "atlantis"
        target = output or pipelines.default_output(environment, chosen, DIST)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.tmp")
        temporary.write_text(pipelines.render(environment, chosen), encoding="utf-8")
        temporary.replace(target)
        console.print(f"wrote {relative(target)}")


@app.command()
def release(
    version: Annotated[str, typer.Option("--version", help="Release version X.Y.Z.")],
) -> None:
    """Build the modules and write each as dist/releases/<module>-X.Y.Z.zip with SHA256SUMS.

    Archives are deterministic (the same source gives the same sha256) and kept across
    later builds. Pin them per wave or account with module_versions and releases.source.
    """
    from bundle import releases
    from bundle import synth as synthesis

    try:
        releases.check_version(version)
        with console.status("synthesising modules") as status:
            synthesis.synth([], progress=lambda text: status.update(text))
        written = releases.release(version)
    except releases.ReleaseError as error:
        errors.print(f"[red]error:[/] {error}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    table = Table(title=f"Release {version} in {relative(DIST)}/releases/")
    table.add_column("archive")
    table.add_column("sha256")
    for name, digest in written.items():
        table.add_row(name, digest)
    console.print(table)


@app.command()
def diagram(
    env: EnvOption = None,
    file: FileOption = None,
    output_dir: Annotated[
        Path | None, typer.Option("--output-dir", "-o", help="Default dist/diagrams/.")
    ] = None,
) -> None:
    """Draw the environment (PNG and SVG): accounts by wave, the hub, and the detection ->
    alert -> remediation flows of the enabled modules (diagrams package, Graphviz)."""
    from bundle import diagrams

    environment = _one_environment(env, file)
    for path in diagrams.render(environment, output_dir or DIST / "diagrams"):
        console.print(f"wrote {relative(path)}")


@app.command()
def schema(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write the JSON Schema.")
    ] = environments.SCHEMA_PATH,
) -> None:
    """Write the environment file's JSON Schema (from the same definitions that validate it).

    Editors with the YAML language server complete and check environment files that
    start with `# yaml-language-server: $schema=environment.schema.json`.
    """
    import json

    text = json.dumps(environments.json_schema(), indent=2, sort_keys=True) + "\n"
    temporary = output.with_name(f".{output.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(output)
    console.print(f"wrote {relative(output)}")


@app.command("list")
def list_() -> None:
    """The modules with their inputs, and the environments with their stacks."""
    from modules import REGISTRY

    for name, module in sorted(REGISTRY.items()):
        table = Table(title=f"module {name}: {module.title}", title_justify="left")
        table.add_column("input")
        table.add_column("type")
        table.add_column("default")
        for item in module.all_inputs():
            table.add_row(item.name, item.type, "required" if item.required else repr(item.default))
        console.print(table)
    for path in environments.discover():
        try:
            loaded = environments.load(path)
        except environments.EnvironmentError as error:
            errors.print(f"[red]error:[/] {error}")
            raise typer.Exit(EXIT_BAD_INPUT) from None
        table = Table(
            title=f"environment {loaded.name}: {loaded.description}", title_justify="left"
        )
        table.add_column("wave", justify="right")
        table.add_column("stack")
        table.add_column("account")
        table.add_column("modules")
        for wave, stacks in loaded.waves().items():
            for stack in stacks:
                table.add_row(str(wave), stack.name, stack.account.id, ", ".join(stack.modules))
        console.print(table)


if __name__ == "__main__":
    app()
