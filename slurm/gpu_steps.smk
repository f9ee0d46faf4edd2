# The "gpu_steps" block of a profile applies to every rule that asks for a GPU.
#
# Included at the end of the Snakefile, once all rules are defined:
#
#     include: "slurm/gpu_steps.smk"
#
# A profile names the GPU partition and GPU model once, for the pseudo rule
# `gpu_steps` (slurm/config.yaml):
#
#     set-resources:
#       gpu_steps:
#         slurm_partition: "gpu"
#         gpu_model: "a100"
#
# and this file copies those resources onto every rule whose resources contain
# `gpu` (the workflow declares gpu=1 on its training, matching and
# interpolation rules when the config says device: cuda). Snakemake's own
# set-resources matches exact rule names only, and some GPU rules are made per
# target set (prune_<i>) or fused group, so a profile cannot list them.
# With device: cpu no rule asks for a GPU and the block has no effect (the
# SLURM plugin would otherwise request a GPU for any job with a gpu_model).
# Resources set for a rule by its own name in set-resources take precedence.


def _apply_gpu_steps_block():
    from snakemake.resources import Resources

    overwrite = workflow.resource_settings.overwrite_resources
    block = overwrite.get("gpu_steps")
    if not block:
        return
    block = Resources.from_mapping(block)
    for each in workflow.rules:  # (not `rule`: a Snakemake keyword, and the linter's pattern)
        if "gpu" not in each.resources:
            continue
        own = overwrite.get(each.name) or {}
        for key, value in block.items():
            if key not in own:
                each.resources[key] = value


_apply_gpu_steps_block()
