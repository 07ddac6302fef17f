"""The offer stage: purchases -> candidates -> online features -> champion model -> rules -> offers."""
