# The two README commands.
.PHONY: quickstart test
quickstart:
	sh examples/quickstart/train.sh
test:
	bash scripts/test.sh
