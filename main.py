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
