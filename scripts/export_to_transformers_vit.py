"""Convert a trained hf_vit folder into transformers' built-in ViTForImageClassification.

    python scripts/export_to_transformers_vit.py runs/gpu runs/gpu-vit   (the gpu recipe pools the [CLS] token)

The result loads with AutoModelForImageClassification / pipeline("image-classification")
WITHOUT trust_remote_code (no .py files), with the same logits (checked before writing).
Needs pool='cls' and heads * dim_head == dim; otherwise it stops and says why.
"""

import argparse
import sys
from pathlib import Path

try:  # the libraries take seconds to load, before the script's own answer to Ctrl-C is in place
    from hf_vit import HfViTConfig
    from hf_vit.data import flags_in_messages
    from hf_vit.export_transformers import NotExportable, export_to_transformers_vit
    from hf_vit.interrupted import run_script
    from hf_vit.output_folder import refuse_several_processes
except KeyboardInterrupt:  # nothing was done yet: one line and Ctrl-C's status, not a traceback
    print("export_to_transformers_vit.py: interrupted while loading its libraries; nothing was done.", file=sys.stderr)
    sys.exit(130)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", help="the hf_vit model folder (config.json, model.safetensors, preprocessor_config.json)")
    parser.add_argument("output_dir", help="where to write the transformers ViT folder")
    parser.add_argument("--repo_id", default=None, help="repo id to show in the card's usage example")
    parser.add_argument("--overwrite", action="store_true", help="replace output_dir if it exists")
    args = parser.parse_args(argv)
    try:
        refuse_several_processes("export_to_transformers_vit.py", "each would export the model into the same output_dir")
        with flags_in_messages():  # the export's messages name this script's flags (--overwrite)
            out = export_to_transformers_vit(args.model_dir, args.output_dir, repo_id=args.repo_id,
                                             overwrite=args.overwrite)
    except (NotExportable, OSError, ValueError, RuntimeError) as err:  # OSError: missing or unreadable files
        sys.exit(f"error: {err}")
    print(f"exported to {out} (transformers ViTForImageClassification, no remote code)")
    config = HfViTConfig.from_pretrained(Path(args.model_dir).expanduser())
    if config.num_channels == 1:  # vit_config_from makes it a 3-channel ViT: pipeline() hands it RGB images
        print("note: the grey (1-channel) model was exported as an RGB ViT with the grey conversion (PIL's \"L\" "
              "weights) folded into its patch projection, so pipeline() takes colour images as they are.")
    if config.emb_dropout != config.dropout:  # vit_config_from folds emb_dropout into ViT's one rate
        print(f"note: emb_dropout {config.emb_dropout} differs from dropout {config.dropout}, and transformers' ViT has "
              f"one rate for both (hidden_dropout_prob): the export has {config.dropout}. The logits are the same; only "
              "a further training of the export drops the embeddings at another rate.")
    if config.dropout > 0:  # hf_vit's MLP: Linear, GELU, Dropout, Linear, Dropout; ViT's: Linear, GELU, Linear
        print(f"note: dropout {config.dropout}: transformers' ViT has no dropout inside its MLP, where hf_vit drops "
              "between the GELU and the second Linear too, so the export drops once where the model drops twice. The "
              "logits are the same; only a further training of the export drops less.")


if __name__ == "__main__":  # the export is written into a hidden staging folder, which replaces output_dir when whole
    sys.exit(run_script("export_to_transformers_vit.py", main, "nothing was exported: output_dir is as it was (an "
                        "export replaces it whole, or not at all). Rerun the same command."))
