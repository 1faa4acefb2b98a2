#!/bin/sh
# GIT_ASKPASS helper: answers git's credential prompts from the git process's environment, holds no secret.
case "$1" in
  Username*|username*) printf '%s\n' "$ANGLES_GIT_USERNAME" ;;
  *) printf '%s\n' "$ANGLES_GIT_TOKEN" ;;
esac
